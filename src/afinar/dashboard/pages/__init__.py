"""One module per dashboard section; each exposes ``router``."""
