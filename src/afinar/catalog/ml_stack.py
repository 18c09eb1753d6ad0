"""The machine-learning stack (torch, transformers, peft, scikit-learn): imported once, loaded one at a time.

Two threads of one process must not do either of these at the same time:

* **import** transformers (and what it pulls in: peft, scikit-learn) for the first time. It is a
  lazy module (a name is imported when first touched) with circular imports inside; two threads
  importing it at once can see it half-initialised: ``ImportError: cannot import name
  'AutoModel' from 'transformers'``.
* **load** a model (``from_pretrained``, ``from_config``, ``PeftModel.from_pretrained``). While it
  loads, transformers swaps process-wide functions (``PreTrainedModel.tie_weights``, torch's
  ``nn.init`` functions) for no-ops and puts them back afterwards; a second load interleaved with
  it ends up with untied weights left on the ``meta`` device (``Tensor.item() cannot be called on
  meta tensors`` at the first generation) or restores the no-ops for good.

``import_ml_stack()`` imports everything the server imports lazily, once, under one process-wide
lock. ``afinar serve`` runs it on one thread as it starts; until it is done requests wait (only
``/health`` answers) and the worker and the warm-up have not started. ``loading()`` holds the same
lock around a model load, so loads never overlap. Tokenizer loads and inference need neither.

The API tier never calls these at import time, so it starts (and its tests run) without torch.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# What the engine, the moderation backend, the tokenizer paths and the bundled-model conversion
# import lazily, in dependency order. Model families: Llama with a GPT-2 tokenizer (the bundled
# SmolLM2, the tests' tiny model) and BERT (the MiniLM embedding model); others import on their
# first load, under ``loading()``.
MODULES = (
    "torch",
    "transformers",
    "transformers.modeling_utils",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.generation",
    "transformers.cache_utils",
    "transformers.models.llama.modeling_llama",
    "transformers.models.bert.modeling_bert",
    "transformers.models.bert.tokenization_bert",
    "transformers.models.gpt2.tokenization_gpt2",
    "peft",
    "peft.tuners.lora.layer",
    "peft.tuners.tuners_utils",
    "sklearn.linear_model",
    "sklearn.calibration",
    "sklearn.feature_extraction.text",
)
# Names of lazy modules to touch (``from transformers import AutoModel`` resolves these).
ATTRIBUTES = {
    "transformers": (
        "AutoConfig",
        "AutoModel",
        "AutoModelForCausalLM",
        "AutoTokenizer",
        "DynamicCache",
        "GenerationConfig",
        "PreTrainedTokenizerFast",
    ),
    "peft": ("PeftModel",),
}

_lock = threading.RLock()
_imported = False


def quiet_optional_kernels() -> None:
    """torchao (QLoRA's NF4, pure Python) also ships compiled kernels for GPUs we do not use; it
    tries to load them when imported (transformers imports it whenever it is installed) and logs a
    warning per library that does not fit this torch. Skip them and keep its log quiet."""
    os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
    logging.getLogger("torchao").setLevel(logging.ERROR)


def import_ml_stack() -> None:
    """Import the ML stack now, on this thread; other threads wait for it. Idempotent and cheap
    once done. A package that is not installed is skipped (its feature fails when used)."""
    global _imported
    if _imported:
        return
    quiet_optional_kernels()
    with _lock:
        if _imported:
            return
        started = time.monotonic()
        for name in MODULES:
            try:
                module = importlib.import_module(name)
                for attribute in ATTRIBUTES.get(name, ()):
                    getattr(module, attribute)
            except Exception as exc:  # reported; the feature that needs it fails when used
                log.warning("could not import %s: %s", name, exc)
        _imported = True
        log.info("imported torch, transformers, peft and scikit-learn in %.1f s", time.monotonic() - started)


@contextmanager
def loading() -> Iterator[None]:
    """Hold the process-wide model-loading lock (after importing the stack) for one model load."""
    import_ml_stack()
    with _lock:
        yield
