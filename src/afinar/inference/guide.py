"""Constrained decoding for the built-in engine: one llguidance matcher per choice.

A :class:`Guide` follows one choice's tokens through its grammar (``types.Constraint``): before
each sampling step it gives the mask of tokens that keep the reply inside the grammar, after it
takes the chosen token, and says when the grammar admits nothing more (the engine then ends the
choice, as if EOS had been sampled). Rows without a constraint have no guide and pay nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from afinar.errors import InvalidRequest, ServerError
from afinar.inference.grammar import compile_grammar
from afinar.inference.loader import Vocab
from afinar.inference.types import Constraint

log = logging.getLogger(__name__)


def guidance_tokenizer(vocab: Vocab) -> Any:
    """llguidance's view of the vocabulary (~1 s for a 50k vocabulary), built once per tokenizer."""
    if vocab.guidance is None:
        import llguidance.hf

        try:
            vocab.guidance = llguidance.hf.from_tokenizer(vocab.tokenizer, eos_token=sorted(vocab.eos_ids))
        except ValueError as exc:  # a slow (non-Rust) tokenizer
            raise ServerError(f"This model's tokenizer does not support constrained decoding: {exc}") from exc
    return vocab.guidance


class Guide:
    """The grammar state of one choice."""

    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher

    @classmethod
    def start(cls, constraint: Constraint, vocab: Vocab, prefix: str = "") -> Guide:
        """A matcher for ``constraint`` that has already read ``prefix`` (the forced reply opening).

        Raises ``InvalidRequest`` when the grammar does not compile.
        """
        from llguidance import LLMatcher

        tokenizer = guidance_tokenizer(vocab)
        try:
            grammar = compile_grammar(constraint)
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"The output constraint is invalid: {exc}", param=constraint.param) from exc
        matcher = LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise InvalidRequest(
                f"The output constraint could not be compiled: {matcher.get_error()}", param=constraint.param
            )
        # The matcher reads bytes, so any tokenisation of the prefix leaves it in the same state.
        if prefix and not matcher.consume_tokens(tokenizer.greedy_tokenize(prefix)):
            raise ServerError(f"The forced reply opening {prefix!r} does not match the output constraint.")
        return cls(matcher)

    def copy(self) -> Guide:
        return Guide(self.matcher.deep_copy())

    def allowed(self, width: int) -> torch.Tensor:
        """Which of ``width`` token ids (the logits' width) may come next: a bool tensor."""
        packed = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        bits = torch.from_numpy(np.unpackbits(packed, bitorder="little").astype(np.bool_))
        if bits.numel() >= width:
            return bits[:width]
        return torch.cat([bits, torch.zeros(width - bits.numel(), dtype=torch.bool)])

    def advance(self, token: int) -> bool:
        """Take the sampled token; False when it leaves the grammar (a bug: it was masked)."""
        ok = bool(self.matcher.consume_token(token))
        if not ok:
            log.error("constrained decoding: token %d rejected: %s", token, self.matcher.get_error())
        return ok

    @property
    def done(self) -> bool:
        """The grammar admits nothing more: the reply is complete (or the matcher failed)."""
        return bool(self.matcher.is_stopped())
