"""Tests of the test doubles reconciler ships (reconciler.testing)."""
