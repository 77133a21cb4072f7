"""The transcription worker: an RQ worker that keeps models warm and runs engine adapters."""
