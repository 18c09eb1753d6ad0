"""Token counting during validation: render and tokenize examples in batches, in file order.

The validator hands ``TokenCounter`` batches of examples (at most a few hundred, a few MB) that
passed the structural checks. Each batch is rendered with the base model's chat template on
the calling thread (``trained_spans_many``: Python, Jinja) and tokenized on one background
thread (``tokenize_many``: the Rust tokenizer, which releases the GIL and spreads a batch over
the cores), so the next batch is read, checked and rendered while this one is tokenized. At most
two batches are held at any time. Token counts are exactly ``encode_chat``'s (the trainer's):
the same rendering, the same tokenizer call, the same labelling (``encode_tokens``). A
preference line is two conversations (prompt + preferred, prompt + non-preferred: both are scored
in training, ``preference.py``); its counts are the sums over the two.

Problems stay in file order: an example's problems (and any render error or truncation
warning) are handed to ``emit`` only once its batch is done, batches in order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from afinar.datasets.distribution import Distribution
from afinar.datasets.encoding import (
    EncodedExample,
    Spans,
    Tokens,
    encode_tokens,
    tokenize_many,
    trained_spans_many,
)
from afinar.datasets.report import Problem


@dataclass(slots=True)
class PendingExample:
    """One example's problems, held back until its batch is counted."""

    n: int  # line number
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    conversations: list[dict[str, Any]] = field(default_factory=list)  # what to render and count


class TokenTally:
    """Token totals and per-example distributions (bounded memory) of the counted examples."""

    def __init__(self, context_length: int | None) -> None:
        self.context_length = context_length
        self.max_length = context_length if context_length is not None else sys.maxsize
        self.per_example = Distribution()
        self.trained_per_example = Distribution()
        self.total = self.billable = self.trained = self.n_truncated = self.truncated = 0

    def add(self, n: int, encs: Sequence[EncodedExample], warnings: list[Problem]) -> None:
        """Count one example: its one encoded conversation, or a preference line's two."""
        full = sum(e.n_tokens + e.truncated_tokens for e in encs)
        n_trained = sum(e.n_trained for e in encs)
        self.per_example.add(full)
        self.trained_per_example.add(n_trained)
        self.total += full
        self.billable += sum(e.n_tokens for e in encs)
        self.trained += n_trained
        truncated = [e for e in encs if e.truncated_tokens]
        if truncated:
            self.n_truncated += 1
            self.truncated += sum(e.truncated_tokens for e in truncated)
        for enc in truncated:
            length = enc.n_tokens + enc.truncated_tokens
            warnings.append(
                Problem(
                    n,
                    None,
                    "truncated",
                    f"Example {n} has {length} tokens, more than the context length of "
                    f"{self.context_length}; the last {enc.truncated_tokens} tokens will be cut"
                    + ("." if enc.n_trained else ", leaving no assistant tokens to train on."),
                )
            )

    def report_fields(self) -> dict[str, Any]:
        """The token fields of a ``ValidationReport``."""
        return {
            "n_tokenized": self.per_example.count,
            "total_tokens": self.total,
            "trained_tokens": self.trained,
            "billable_tokens_per_epoch": self.billable,
            "n_truncated": self.n_truncated,
            "truncated_tokens": self.truncated,
            "tokens_per_example": self.per_example.stats(),
            "trained_tokens_per_example": self.trained_per_example.stats(),
            "token_histogram": self.per_example.histogram(),
        }


def _render_error(p: PendingExample, exc: BaseException) -> Problem:
    return Problem(
        p.n,
        None,
        "render_error",
        f"Example {p.n} cannot be rendered with the base model's chat template: {exc}.",
    )


@dataclass
class _Batch:
    examples: list[PendingExample]
    counted: list[tuple[PendingExample, list[tuple[str, Spans]]]]
    tokenized: Future[Sequence[Tokens]] | None


class TokenCounter:
    """Counts tokens of batches of examples, overlapping tokenization with the caller's work.

    Use as a context manager; ``submit`` batches in file order; ``emit`` receives every example
    of every batch, in order, once its counts (and problems) are final.
    """

    def __init__(self, tokenizer: Any, tally: TokenTally, emit: Callable[[PendingExample], None]) -> None:
        self.tokenizer = tokenizer
        self.tally = tally
        self.emit = emit
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="afinar-tokenize")
        self._inflight: _Batch | None = None

    def __enter__(self) -> TokenCounter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, examples: list[PendingExample]) -> None:
        """Render this batch now, finish the previous one, and tokenize this one in the background."""
        todo = [p for p in examples if p.conversations]
        rendered = iter(trained_spans_many(self.tokenizer, [c for p in todo for c in p.conversations]))
        counted: list[tuple[PendingExample, list[tuple[str, Spans]]]] = []
        for p in todo:
            results = [next(rendered) for _ in p.conversations]
            failed = next((r for r in results if isinstance(r, Exception)), None)
            if failed is not None:  # a template that cannot render this conversation
                p.errors.append(_render_error(p, failed))
            else:
                counted.append((p, [r for r in results if not isinstance(r, Exception)]))
        # The previous batch was tokenized while this one rendered; finish it before starting the
        # next tokenization, so that the tokenizer is never called from two threads at once.
        self._finish()
        texts = [text for _, parts in counted for text, _ in parts]
        future = self._executor.submit(tokenize_many, self.tokenizer, texts) if texts else None
        self._inflight = _Batch(examples, counted, future)

    def _finish(self) -> None:
        batch, self._inflight = self._inflight, None
        if batch is None:
            return
        if batch.tokenized is not None:
            counted = batch.counted
            try:
                tokenized = batch.tokenized.result()
            except Exception:  # find the example the tokenizer refuses; count the others
                tokenized, kept = [], []
                for p, parts in counted:
                    try:
                        tokenized += tokenize_many(self.tokenizer, [text for text, _ in parts])
                        kept.append((p, parts))
                    except Exception as exc:
                        p.errors.append(_render_error(p, exc))
                counted = kept
            tokens = iter(tokenized)
            for p, parts in counted:
                encs = [encode_tokens(spans, next(tokens), self.tally.max_length) for _, spans in parts]
                self.tally.add(p.n, encs, p.warnings)
        for p in batch.examples:
            self.emit(p)
