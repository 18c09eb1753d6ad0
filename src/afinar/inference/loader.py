"""Loaded weights: each base model once, LoRA adapters hot-loaded into one PeftModel per base.

Adapters live in one LRU (``adapter_cache_size`` entries across all bases); evicting one calls
``delete_adapter``. An adapter in use by a running generation is never evicted or deleted under
it: it is marked and removed when released. A fine-tuned model's tokenizer (and so its chat
template and EOS) is the one stored with the adapter, falling back to the base's.

Not thread-safe by itself: the engine holds ``lock`` around every use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from afinar.catalog.ml_stack import import_ml_stack, loading
from afinar.errors import NotFound, ServerError
from afinar.inference.multilora import MixedLoRA
from afinar.inference.text import TokenTexts

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclass
class Vocab:
    """A tokenizer with what serving needs around it."""

    tokenizer: Any
    eos_ids: frozenset[int]
    texts: TokenTexts
    guidance: Any = None  # llguidance's tokenizer, built on the first constrained request (guide.py)


@dataclass
class LoadedBase:
    key: str
    path: Path
    model: Any  # the transformers model; LoRA layers get injected into it in place
    vocab: Vocab
    max_positions: int
    peft: Any = None  # the PeftModel wrapping ``model`` once an adapter is loaded
    active: str | None = None  # the peft adapter currently set active
    tuner_layers: list[Any] = field(default_factory=list)  # peft's LoRA layers inside ``model``
    adapters_off: bool = False
    mixed: MixedLoRA = field(default_factory=MixedLoRA)  # batched LoRA for mixed-adapter batches

    def use_adapters(self, on: bool) -> None:
        """Switch every LoRA layer on or off by its flag.

        peft's ``disable_adapter()`` context re-reads the whole model's status on each entry (~70 ms
        for a 135M model, more than a decode step), so the flag is flipped only on transitions.
        """
        if self.adapters_off == (not on):
            return
        for layer in self.tuner_layers:
            layer._disable_adapters = not on
        self.adapters_off = not on


@dataclass
class LoadedAdapter:
    key: str
    path: Path
    name: str  # peft adapter name (no dots allowed in module dict keys)
    base: LoadedBase
    vocab: Vocab
    users: int = 0
    doomed: bool = field(default=False)


def path_key(path: Path) -> str:
    return str(Path(path).resolve())


def _eos_ids(tokenizer: Any, *dirs: Path) -> frozenset[int]:
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for d in dirs:
        gen = d / "generation_config.json"
        if gen.is_file():
            value = json.loads(gen.read_text()).get("eos_token_id")
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list):
                ids.update(int(v) for v in value)
    return frozenset(ids)


def _load_vocab(path: Path, *eos_dirs: Path) -> Vocab:
    import_ml_stack()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if not getattr(tokenizer, "chat_template", None):
        raise ServerError(f"the tokenizer in {path} has no chat template", code="model_error")
    return Vocab(tokenizer=tokenizer, eos_ids=_eos_ids(tokenizer, *eos_dirs), texts=TokenTexts(tokenizer))


def _refresh_layers(base: LoadedBase) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    base.tuner_layers = [m for m in base.model.modules() if isinstance(m, BaseTunerLayer)]
    base.mixed.invalidate()
    for layer in base.tuner_layers:
        layer._disable_adapters = base.adapters_off


def is_full_model(path: Path) -> bool:
    return not (path / "adapter_config.json").is_file() and (path / "config.json").is_file()


class ModelStore:
    def __init__(self, adapter_cache_size: int = 8) -> None:
        self.adapter_cache_size = max(1, adapter_cache_size)
        self.lock = threading.RLock()
        self._bases: dict[str, LoadedBase] = {}
        self._adapters: OrderedDict[str, LoadedAdapter] = OrderedDict()
        # Turns an adapter path whose directory is not on disk (encrypted at rest) into a plaintext
        # directory that lives only while the adapter is being loaded (services/artefacts.py).
        self.opener: Callable[[Path], AbstractContextManager[Path]] | None = None

    # --- bases ---------------------------------------------------------------------------

    def base(self, path: Path) -> LoadedBase:
        key = path_key(path)
        loaded = self._bases.get(key)
        if loaded is None:
            loaded = self._load_base(Path(path), key)
            self._bases[key] = loaded
        return loaded

    def _load_base(self, path: Path, key: str) -> LoadedBase:
        if not (path / "config.json").is_file():
            raise NotFound(f"model weights not found at {path}", code="model_not_found")
        with loading():  # one model load at a time per process (catalog/ml_stack.py)
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, use_safetensors=True)
        model.eval()
        model.requires_grad_(False)
        max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        log.info("loaded base model %s", path)
        return LoadedBase(
            key=key, path=path, model=model, vocab=_load_vocab(path, path), max_positions=max_positions
        )

    # --- adapters ------------------------------------------------------------------------

    def acquire(self, base_path: Path, adapter_path: Path | None) -> tuple[LoadedBase, LoadedAdapter | None]:
        """The loaded base and adapter for a request; the adapter is pinned until ``release``."""
        if adapter_path is not None and is_full_model(Path(adapter_path)):
            return self.base(Path(adapter_path)), None  # a full fine-tune is served as its own base
        base = self.base(base_path)
        if adapter_path is None:
            return base, None
        key = path_key(adapter_path)
        adapter = self._adapters.get(key)
        if adapter is None or adapter.doomed:
            adapter = self._load_adapter(base, Path(adapter_path), key)
            self._adapters[key] = adapter
        self._adapters.move_to_end(key)
        adapter.users += 1
        self._evict()
        return base, adapter

    def release(self, adapter: LoadedAdapter | None) -> None:
        if adapter is None:
            return
        adapter.users -= 1
        if adapter.doomed and adapter.users <= 0:
            self._delete(adapter)
        self._evict()

    def _load_adapter(self, base: LoadedBase, path: Path, key: str) -> LoadedAdapter:
        if not (path / "adapter_config.json").is_file() and self.opener is not None:
            with self.opener(path) as plain:  # decrypted for the duration of the load only
                return self._load_adapter_from(base, plain, path, key)
        return self._load_adapter_from(base, path, path, key)

    def _load_adapter_from(self, base: LoadedBase, source: Path, path: Path, key: str) -> LoadedAdapter:
        """Load the adapter files in ``source``; ``path`` (and ``key``) is what it is known by."""
        if not (source / "adapter_config.json").is_file():
            raise NotFound(f"adapter not found at {path}", code="model_not_found")
        name = "a" + hashlib.sha1(key.encode()).hexdigest()[:16]
        with loading(), warnings.catch_warnings():  # one model load at a time (catalog/ml_stack.py)
            from peft import PeftModel

            warnings.simplefilter("ignore", FutureWarning)
            if base.peft is None:
                base.peft = PeftModel.from_pretrained(
                    base.model, str(source), adapter_name=name, is_trainable=False
                )
                base.peft.eval()
            else:
                if name in base.peft.peft_config:  # a doomed copy still pinned by a running request
                    name = name + "x" + str(len(base.peft.peft_config))
                base.peft.load_adapter(str(source), adapter_name=name, is_trainable=False)
        base.active = None
        _refresh_layers(base)
        has_tokenizer = any((source / f).is_file() for f in TOKENIZER_FILES)
        vocab = _load_vocab(source, base.path, source) if has_tokenizer else base.vocab
        log.info("loaded adapter %s as %s", path, name)
        return LoadedAdapter(key=key, path=path, name=name, base=base, vocab=vocab)

    def _evict(self) -> None:
        while len(self._adapters) > self.adapter_cache_size:
            victim = next((a for a in self._adapters.values() if a.users <= 0), None)
            if victim is None:
                return  # every cached adapter is in use; shrink later
            self._adapters.pop(victim.key)
            self._delete(victim)

    def _delete(self, adapter: LoadedAdapter) -> None:
        peft = adapter.base.peft
        if peft is not None and adapter.name in peft.peft_config:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "was active which is now deleted"
                peft.delete_adapter(adapter.name)
            adapter.base.active = None
            _refresh_layers(adapter.base)
            log.info("unloaded adapter %s", adapter.path)

    def unload(self, adapter_path: Path) -> bool:
        """Forget an adapter (its model was deleted); True if it was loaded."""
        key = path_key(adapter_path)
        if key in self._bases:  # a full fine-tune served as its own base
            del self._bases[key]
            return True
        adapter = self._adapters.pop(key, None)
        if adapter is None:
            return False
        if adapter.users > 0:
            adapter.doomed = True
        else:
            self._delete(adapter)
        return True

    def loaded_adapters(self) -> list[Path]:
        return [a.path for a in self._adapters.values()]

    def loaded_bases(self) -> list[Path]:
        return [b.path for b in self._bases.values()]
