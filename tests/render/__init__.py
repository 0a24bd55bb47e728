"""Tests for the render area."""
