"""Shared test fixtures: processes."""
