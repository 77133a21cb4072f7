"""Unit tests of `api.http`: routes, schemas, the app."""
