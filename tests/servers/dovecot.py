"""Fixture module for the real dovecot server used in tests (being written)."""
