"""The command-line client of the transcription service."""
