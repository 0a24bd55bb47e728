"""Benchmarks: commands that print figures. Never run as tests."""
