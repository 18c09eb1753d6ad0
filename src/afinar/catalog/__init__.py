"""Base models: the catalogue file, and offline loading (bundled SmolLM2, local paths, hub ids)."""
