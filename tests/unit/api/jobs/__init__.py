"""Unit tests of `api.jobs`: submission, idempotency, listing, long-polls, cancel."""
