"""Shared test fixtures: smtp."""
