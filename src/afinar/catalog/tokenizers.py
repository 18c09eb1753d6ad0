"""A base model's tokenizer (with its chat template), loaded from the model's local directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_tokenizer(base_path: Path) -> Any:
    """The tokenizer of the base model at ``base_path`` (the catalogue's ``local_path``)."""
    from afinar.catalog.ml_stack import import_ml_stack

    import_ml_stack()  # never import transformers on two threads at once (catalog/ml_stack.py)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_path))
