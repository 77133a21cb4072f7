"""Unit tests of `api.intake`: streaming, staging, probing."""
