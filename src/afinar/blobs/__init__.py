"""File and artefact storage behind a small protocol (a local directory today)."""
