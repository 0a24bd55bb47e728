"""Tests of the world layer: platforms, the command runner, and their contract suite."""
