"""The HTTP tier: accepts uploads, enqueues jobs, reports their state; never imports an engine."""
