"""Encryption at rest: the master key, per-organisation data keys, and the blob stream format."""
