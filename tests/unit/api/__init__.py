"""Unit tests of the HTTP tier, laid out like `api/`."""
