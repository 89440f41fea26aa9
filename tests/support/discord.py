"""Shared test fixtures: discord."""
