"""Helper scripts of the repository (run directly; importable for their tests)."""
