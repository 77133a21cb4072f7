"""API keys: stored hashed in Redis, managed with `python -m api.keys`."""
