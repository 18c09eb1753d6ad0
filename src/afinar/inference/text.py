"""Incremental detokenisation with stop strings, and token strings/bytes for logprobs."""

from __future__ import annotations

from functools import cache
from typing import Any

REPLACEMENT = "\ufffd"


class TextStream:
    """The text of one choice as tokens arrive; hands out only text that is safe to send.

    Text is held back while it ends in an incomplete UTF-8 sequence or could be the start of a
    stop string. When a stop string appears, the text is cut just before it and ``stopped`` is
    set. ``prefix`` is text forced at the start of the reply (it is never searched for stops).
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...] = (), prefix: str = "") -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._stop = tuple(s for s in stop if s)
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self.prefix = prefix
        self.text = prefix
        self.emitted = 0
        self._checked = len(prefix)
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add a generated token; return the newly safe text (possibly empty)."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        decoded = self._tokenizer.decode(
            self._ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        self.text = self.prefix + decoded
        if self._stop:
            start = max(len(self.prefix), self._checked - self._hold)
            hits = [i for i in (self.text.find(s, start) for s in self._stop) if i >= 0]
            self._checked = len(self.text)
            if hits:
                self.text = self.text[: min(hits)]
                self.stopped = True
                return self._take(len(self.text))
        safe = len(self.text)
        while safe > self.emitted and self.text[safe - 1] == REPLACEMENT:
            safe -= 1
        safe -= self._stop_prefix_len(safe)
        return self._take(safe)

    def flush(self) -> str:
        """Everything not sent yet (called when the choice ends)."""
        return self._take(len(self.text))

    def _stop_prefix_len(self, end: int) -> int:
        if not self._stop:
            return 0
        floor = max(self.emitted, len(self.prefix))
        for k in range(min(self._hold, end - floor), 0, -1):
            tail = self.text[end - k : end]
            if any(s.startswith(tail) for s in self._stop):
                return k
        return 0

    def _take(self, end: int) -> str:
        if end <= self.emitted:
            return ""
        out = self.text[self.emitted : end]
        self.emitted = end
        return out


@cache
def _unicode_to_byte() -> dict[str, int]:
    """The inverse of GPT-2's byte-to-unicode table used by byte-level BPE vocabularies."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, codes, strict=True)}


class TokenTexts:
    """``token`` and ``bytes`` of a token id as OpenAI's logprobs report them (cached)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._cache: dict[int, tuple[str, list[int]]] = {}
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self._byte_level = type(decoder).__name__ == "ByteLevel"

    def get(self, token_id: int) -> tuple[str, list[int]]:
        hit = self._cache.get(token_id)
        if hit is None:
            hit = self._compute(token_id)
            self._cache[token_id] = hit
        return hit

    def _compute(self, token_id: int) -> tuple[str, list[int]]:
        raw: bytes | None = None
        if self._byte_level:
            piece = self._tokenizer.convert_ids_to_tokens(token_id)
            table = _unicode_to_byte()
            if isinstance(piece, str) and all(ch in table for ch in piece):
                raw = bytes(table[ch] for ch in piece)
        if raw is None:
            raw = str(self._tokenizer.decode([token_id], clean_up_tokenization_spaces=False)).encode()
        return raw.decode("utf-8", errors="backslashreplace"), list(raw)
