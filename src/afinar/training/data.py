"""Training data: read chat (or preference) JSONL, encode it with the base model's template, cut
deterministic batches.

The order of an epoch depends only on (seed, epoch), so a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TextIO

import torch

from afinar.datasets.encoding import IGNORE_INDEX, EncodedExample, encode_chat
from afinar.datasets.preference import preference_conversations

Layout = Literal["varlen", "padded"]


class DataError(ValueError):
    """A training or validation file that cannot be used; the message names the file and line."""


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 63-bit seed from the run seed and a purpose (no dependence on Python's hash())."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def open_text(path: str | Path, data_key: bytes | None = None, blob_key: str | None = None) -> TextIO:
    """The file as text; an encrypted blob (``data_key`` and its ``blob_key``) is decrypted as read."""
    if data_key is None:
        return open(path, encoding="utf-8")
    from afinar.crypto.stream import ChunkReader, decrypt_chunks

    raw = open(path, "rb")  # noqa: SIM115 - closed with the reader

    def chunks() -> Iterator[bytes]:
        while chunk := raw.read(1024 * 1024):
            yield chunk

    reader = ChunkReader(decrypt_chunks(data_key, blob_key or "", chunks()), on_close=raw)
    return io.TextIOWrapper(io.BufferedReader(reader), encoding="utf-8")


def read_jsonl(
    path: str | Path,
    name: str,
    data_key: bytes | None = None,
    blob_key: str | None = None,
    *,
    preference: bool = False,
) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line: chat lines, or preference lines."""
    rows: list[tuple[int, dict[str, Any]]] = []
    with open_text(path, data_key, blob_key) as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{name} line {number}: invalid JSON ({exc.msg})") from exc
            if preference and not (isinstance(row, dict) and isinstance(row.get("input"), dict)):
                raise DataError(f"{name} line {number}: expected a preference object with an 'input'")
            if not preference and not (isinstance(row, dict) and isinstance(row.get("messages"), list)):
                raise DataError(f"{name} line {number}: expected an object with a 'messages' list")
            rows.append((number, row))
    if not rows:
        raise DataError(f"{name}: no examples")
    return rows


def encode_file(
    tokenizer: Any,
    path: str | Path,
    max_length: int,
    name: str,
    data_key: bytes | None = None,
    blob_key: str | None = None,
) -> list[EncodedExample]:
    examples: list[EncodedExample] = []
    for number, row in read_jsonl(path, name, data_key, blob_key):
        try:
            examples.append(encode_chat(tokenizer, row, max_length))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{name} line {number}: cannot be encoded ({exc})") from exc
    return examples


@dataclass(frozen=True)
class PreferencePair:
    """One preference line encoded as its two scored conversations (``datasets/preference.py``),
    with the reference model's log-probability of each answer once ``dpo.with_reference`` has
    computed them. ``n_tokens`` is what the pair bills: both sequences, as validation counts them."""

    chosen: EncodedExample
    rejected: EncodedExample
    ref_chosen: float = 0.0
    ref_rejected: float = 0.0

    @property
    def n_tokens(self) -> int:
        return self.chosen.n_tokens + self.rejected.n_tokens

    def with_reference(self, chosen: float, rejected: float) -> PreferencePair:
        return replace(self, ref_chosen=chosen, ref_rejected=rejected)


def encode_preference_file(
    tokenizer: Any,
    path: str | Path,
    max_length: int,
    name: str,
    data_key: bytes | None = None,
    blob_key: str | None = None,
) -> list[PreferencePair]:
    """Every preference line of the file as a pair (no reference log-probabilities yet)."""
    pairs: list[PreferencePair] = []
    for number, row in read_jsonl(path, name, data_key, blob_key, preference=True):
        try:
            chosen, rejected = (encode_chat(tokenizer, c, max_length) for c in preference_conversations(row))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise DataError(f"{name} line {number}: cannot be encoded ({exc})") from exc
        pairs.append(PreferencePair(chosen, rejected))
    return pairs


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The example order of ``epoch`` (0-based): a shuffle seeded from (seed, epoch)."""
    order = list(range(n))
    random.Random(derive_seed(seed, "shuffle", epoch)).shuffle(order)
    return order


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return -(-n_examples // batch_size)


def epoch_batches(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass(frozen=True)
class Batch:
    """Model inputs plus next-token targets (-100 where there is no loss), shaped like input_ids."""

    inputs: dict[str, Any]
    targets: torch.Tensor
    n_tokens: int  # real (non-padding) tokens, as billed
    n_labels: int  # positions that carry loss


def _shifted_targets(example: EncodedExample) -> list[int]:
    # The prediction at position t is scored against the label of token t+1.
    return [*example.labels[1:], IGNORE_INDEX]


def collate(examples: list[EncodedExample], layout: Layout, pad_id: int) -> Batch:
    targets_per = [_shifted_targets(e) for e in examples]
    n_tokens = sum(e.n_tokens for e in examples)
    n_labels = sum(1 for t in targets_per for x in t if x != IGNORE_INDEX)
    if layout == "varlen":
        ids = torch.tensor([t for e in examples for t in e.input_ids], dtype=torch.long).unsqueeze(0)
        pos = torch.tensor([p for e in examples for p in range(e.n_tokens)], dtype=torch.long).unsqueeze(0)
        targets = torch.tensor([t for ts in targets_per for t in ts], dtype=torch.long).unsqueeze(0)
        cu = [0]
        for e in examples:
            cu.append(cu[-1] + e.n_tokens)
        cu_t = torch.tensor(cu, dtype=torch.int32)
        longest = max(e.n_tokens for e in examples)
        inputs: dict[str, Any] = {
            "input_ids": ids,
            "position_ids": pos,
            "cu_seq_lens_q": cu_t,
            "cu_seq_lens_k": cu_t,
            "max_length_q": longest,
            "max_length_k": longest,
        }
        return Batch(inputs=inputs, targets=targets, n_tokens=n_tokens, n_labels=n_labels)
    longest = max(e.n_tokens for e in examples)
    ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), longest), dtype=torch.long)
    targets = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
    for row, (e, ts) in enumerate(zip(examples, targets_per, strict=True)):
        ids[row, : e.n_tokens] = torch.tensor(e.input_ids, dtype=torch.long)
        mask[row, : e.n_tokens] = 1
        targets[row, : e.n_tokens] = torch.tensor(ts, dtype=torch.long)
    return Batch(
        inputs={"input_ids": ids, "attention_mask": mask},
        targets=targets,
        n_tokens=n_tokens,
        n_labels=n_labels,
    )
