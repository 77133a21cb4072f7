"""Unit tests of `worker`, with the fake engine: jobs, cancel, webhooks, housekeeping."""
