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


def render_prompt(tokenizer: Any, messages: list[dict[str, Any]], tools: Any = None) -> str:
    """The serving-time prompt: the conversation plus the assistant generation prompt."""
    prepared = prepare_messages(messages, tools, getattr(tokenizer, "chat_template", None))
    return _render(tokenizer, prepared, tools, True)


def trained_spans(tokenizer: Any, example: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character spans of the assistant turns that are trained on."""
    tools = example.get("tools")
    raw = example["messages"]
    messages = prepare_messages(raw, tools, getattr(tokenizer, "chat_template", None))
    text = _render(tokenizer, messages, tools, False)
    eos = tokenizer.eos_token or ""
    spans: list[tuple[int, int]] = []
    shift = len(messages) - len(raw)  # a tools preamble may have been put in front
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or raw[i - shift].get("weight", 1) == 0:
            continue
        before = _render(tokenizer, messages[:i], tools, True) if i else ""
        through = _render(tokenizer, messages[: i + 1], tools, False)
        if not text.startswith(through) or not through.startswith(before):
            raise ValueError("chat template does not render conversations incrementally")
        start, end = len(before), len(through)
        eos_at = through.rfind(eos, start) if eos else -1
        end = eos_at + len(eos) if eos_at >= 0 else start + len(through[start:end].rstrip())
        spans.append((start, end))
    return text, spans


def encode_chat(tokenizer: Any, example: dict[str, Any], max_length: int) -> EncodedExample:
    text, spans = trained_spans(tokenizer, example)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    span_iter = iter(sorted(spans))
    current = next(span_iter, None)
    for k, (tok_start, tok_end) in enumerate(enc["offset_mapping"]):
        while current is not None and tok_start >= current[1]:
            current = next(span_iter, None)
        if current is None:
            break
        if tok_end > current[0] and tok_start < current[1]:
            labels[k] = ids[k]
    cut = max(0, len(ids) - max_length)
    if cut:
        ids, labels = ids[:max_length], labels[:max_length]
    return EncodedExample(input_ids=ids, labels=labels, truncated_tokens=cut)
