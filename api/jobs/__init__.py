"""Jobs on the queue: submission (with Idempotency-Key), reads, the index, long-polls, cancel."""
