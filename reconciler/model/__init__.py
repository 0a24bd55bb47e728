"""The pure core: facts, the state fold, configuration, desired state, actions and the plan.

Nothing in this package performs I/O or reads the clock: time is passed in.
"""
