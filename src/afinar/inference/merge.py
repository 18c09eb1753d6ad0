"""A LoRA adapter merged into its base: one standalone Hugging Face model folder (model export).

The merge runs in float32 (``peft``'s ``merge_and_unload``: W + scale * B @ A), then the merged
weights are saved in the base's own dtype (a bfloat16 base stays bfloat16, a float32 one float32),
as safetensors, with the config, the generation config and the tokenizer the adapter was trained
with (its chat template and end-of-turn token; the base's when the adapter carries none).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch

from afinar.catalog.ml_stack import import_ml_stack, loading
from afinar.errors import NotFound
from afinar.inference.loader import TOKENIZER_FILES

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def base_dtype(model_dir: Path) -> torch.dtype:
    """The dtype the base's ``config.json`` records (float32 when it records none we know)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    name = config.get("torch_dtype") or config.get("dtype")
    return _DTYPES.get(str(name), torch.float32)


def merge_adapter(base_dir: Path, adapter_dir: Path, dest: Path) -> Path:
    """Write ``base_dir`` with the PEFT adapter in ``adapter_dir`` merged in, to the folder ``dest``."""
    base_dir, adapter_dir, dest = Path(base_dir), Path(adapter_dir), Path(dest)
    if not (base_dir / "config.json").is_file():
        raise NotFound(f"model weights not found at {base_dir}", code="model_not_found")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise NotFound(f"adapter not found at {adapter_dir}", code="model_not_found")
    import_ml_stack()
    with loading(), warnings.catch_warnings():  # one model load at a time (catalog/ml_stack.py)
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        warnings.simplefilter("ignore", FutureWarning)
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, use_safetensors=True)
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    merged = model.merge_and_unload()
    merged.to(base_dtype(base_dir))
    dest.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(dest), safe_serialization=True)
    has_tokenizer = any((adapter_dir / f).is_file() for f in TOKENIZER_FILES)
    AutoTokenizer.from_pretrained(str(adapter_dir if has_tokenizer else base_dir)).save_pretrained(str(dest))
    log.info("merged adapter %s into %s", adapter_dir, base_dir)
    return dest
