"""Shared test fixtures: browser."""
