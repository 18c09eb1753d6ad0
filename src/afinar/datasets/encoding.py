"""Render a chat example with the base model's own template and mark the trained tokens.

Labels are the token ids of every assistant message with ``weight`` 1 (its content and the
end-of-turn token), and -100 elsewhere. The same function feeds token counting, estimates and the
training loop, so the estimate's billable tokens equal the job's ``trained_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from afinar.datasets.chat_template import prepare_messages

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    truncated_tokens: int  # tokens cut from the end to fit max_length

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def n_trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _render(tokenizer: Any, messages: list[dict[str, Any]], tools: Any, generation_prompt: bool) -> str:
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": generation_prompt}
    if tools:
        kwargs["tools"] = tools
    return str(tokenizer.apply_chat_template(messages, **kwargs))


def _render_many(
    tokenizer: Any, conversations: list[list[dict[str, Any]]], tools: Any, generation_prompt: bool
) -> list[str]:
    """Several conversations in one ``apply_chat_template`` call (its batched form renders each
    one exactly as a call of its own would, with less per-call overhead)."""
    if len(conversations) <= 1:
        return [_render(tokenizer, c, tools, generation_prompt) for c in conversations]
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": generation_prompt}
    if tools:
        kwargs["tools"] = tools
    rendered = tokenizer.apply_chat_template(conversations, **kwargs)
    return [str(r) for r in rendered]


def render_prompt(tokenizer: Any, messages: list[dict[str, Any]], tools: Any = None) -> str:
    """The serving-time prompt: the conversation plus the assistant generation prompt."""
    prepared = prepare_messages(messages, tools, getattr(tokenizer, "chat_template", None))
    return _render(tokenizer, prepared, tools, True)


def trained_spans(tokenizer: Any, example: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character spans of the assistant turns that are trained on.

    A trained assistant message ``i`` spans from the end of ``render(messages[:i])`` with the
    generation prompt to the end of ``render(messages[:i+1])`` (up to and including its EOS).
    The prefixes are rendered in two batched calls (with and without the generation prompt),
    and the last message's prefix is the whole conversation, already rendered: a one-turn
    example costs two renders, not three.
    """
    tools = example.get("tools")
    raw = example["messages"]
    messages = prepare_messages(raw, tools, getattr(tokenizer, "chat_template", None))
    shift = len(messages) - len(raw)  # a tools preamble may have been put in front
    trained = [
        i
        for i, msg in enumerate(messages)
        if msg["role"] == "assistant" and raw[i - shift].get("weight", 1) != 0
    ]
    last = len(messages) - 1
    closed = _render_many(
        tokenizer, [messages, *(messages[: i + 1] for i in trained if i != last)], tools, False
    )
    text, throughs = closed[0], iter(closed[1:])
    opened = iter(_render_many(tokenizer, [messages[:i] for i in trained if i], tools, True))
    eos = tokenizer.eos_token or ""
    spans: list[tuple[int, int]] = []
    for i in trained:
        before = next(opened) if i else ""
        through = text if i == last else next(throughs)
        if not text.startswith(through) or not through.startswith(before):
            raise ValueError("chat template does not render conversations incrementally")
        start, end = len(before), len(through)
        eos_at = through.rfind(eos, start) if eos else -1
        end = eos_at + len(eos) if eos_at >= 0 else start + len(through[start:end].rstrip())
        spans.append((start, end))
    return text, spans


def tokenize_many(tokenizer: Any, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """(token ids, character offsets) of each text, without added special tokens.

    A fast tokenizer gets all texts in one call: its batch call encodes each text exactly as a
    call with that text alone (transformers wraps a single text into a batch of one), and the
    Rust side spreads the batch over the CPU cores.
    """
    if not texts:
        return []
    if len(texts) > 1 and getattr(tokenizer, "is_fast", False):
        enc = tokenizer(
            texts,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [
            (list(ids), list(offsets))
            for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
        ]
    out: list[tuple[list[int], list[tuple[int, int]]]] = []
    for text in texts:
        one = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        out.append((list(one["input_ids"]), list(one["offset_mapping"])))
    return out


def _labels(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    labels = [IGNORE_INDEX] * len(ids)
    span_iter = iter(sorted(spans))
    current = next(span_iter, None)
    for k, (tok_start, tok_end) in enumerate(offsets):
        while current is not None and tok_start >= current[1]:
            current = next(span_iter, None)
        if current is None:
            break
        if tok_end > current[0] and tok_start < current[1]:
            labels[k] = ids[k]
    return labels


def encode_rendered(
    tokenizer: Any, rendered: list[tuple[str, list[tuple[int, int]]]], max_length: int
) -> list[EncodedExample]:
    """Tokenize ``trained_spans`` results in one batch and label the trained tokens."""
    out: list[EncodedExample] = []
    for (_, spans), (ids, offsets) in zip(
        rendered, tokenize_many(tokenizer, [t for t, _ in rendered]), strict=True
    ):
        labels = _labels(ids, offsets, spans)
        cut = max(0, len(ids) - max_length)
        if cut:
            ids, labels = ids[:max_length], labels[:max_length]
        out.append(EncodedExample(input_ids=ids, labels=labels, truncated_tokens=cut))
    return out


def encode_chat(tokenizer: Any, example: dict[str, Any], max_length: int) -> EncodedExample:
    return encode_rendered(tokenizer, [trained_spans(tokenizer, example)], max_length)[0]
