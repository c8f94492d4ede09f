"""Fixture module for the real smtp server used in tests (being written)."""
