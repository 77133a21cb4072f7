"""Contracts shared by the API and the worker: engine catalogue, transcript and job models."""
