"""Render a chat example with the base model's own template and mark the trained tokens.

Labels are the token ids of every assistant message with ``weight`` 1 (its content and the
end-of-turn token), and -100 elsewhere. The same function feeds token counting, estimates and the
training loop, so the estimate's billable tokens equal the job's ``trained_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

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


Spans = list[tuple[int, int]]


@dataclass(frozen=True)
class _Plan:
    """What rendering one example takes: its template-ready messages and trained turns."""

    messages: list[dict[str, Any]]
    tools: Any
    trained: list[int]  # indices (into ``messages``) of the assistant turns with weight 1

    @property
    def closed(self) -> list[list[dict[str, Any]]]:
        """The whole conversation, then each trained turn's prefix through that turn (except the
        last message's, which is the whole conversation), rendered without a generation prompt."""
        last = len(self.messages) - 1
        return [self.messages, *(self.messages[: i + 1] for i in self.trained if i != last)]

    @property
    def opened(self) -> list[list[dict[str, Any]]]:
        """The prefix before each trained turn, rendered with the generation prompt."""
        return [self.messages[:i] for i in self.trained if i]


def _plan(tokenizer: Any, example: dict[str, Any]) -> _Plan:
    tools = example.get("tools")
    raw = example["messages"]
    messages = prepare_messages(raw, tools, getattr(tokenizer, "chat_template", None))
    shift = len(messages) - len(raw)  # a tools preamble may have been put in front
    trained = [
        i
        for i, msg in enumerate(messages)
        if msg["role"] == "assistant" and raw[i - shift].get("weight", 1) != 0
    ]
    return _Plan(messages, tools, trained)


def _spans(plan: _Plan, closed: list[str], opened: list[str], eos: str) -> tuple[str, Spans]:
    text, throughs, befores = closed[0], iter(closed[1:]), iter(opened)
    last = len(plan.messages) - 1
    spans: Spans = []
    for i in plan.trained:
        before = next(befores) if i else ""
        through = text if i == last else next(throughs)
        if not text.startswith(through) or not through.startswith(before):
            raise ValueError("chat template does not render conversations incrementally")
        start, end = len(before), len(through)
        eos_at = through.rfind(eos, start) if eos else -1
        end = eos_at + len(eos) if eos_at >= 0 else start + len(through[start:end].rstrip())
        spans.append((start, end))
    return text, spans


def _render_plan(tokenizer: Any, plan: _Plan) -> tuple[str, Spans]:
    closed = _render_many(tokenizer, plan.closed, plan.tools, False)
    opened = _render_many(tokenizer, plan.opened, plan.tools, True)
    return _spans(plan, closed, opened, tokenizer.eos_token or "")


def trained_spans(tokenizer: Any, example: dict[str, Any]) -> tuple[str, Spans]:
    """The rendered text and the character spans of the assistant turns that are trained on.

    A trained assistant message ``i`` spans from the end of ``render(messages[:i])`` with the
    generation prompt to the end of ``render(messages[:i+1])`` (up to and including its EOS).
    The prefixes are rendered in two batched calls (with and without the generation prompt),
    and the last message's prefix is the whole conversation, already rendered: a one-turn
    example costs two renders, not three.
    """
    return _render_plan(tokenizer, _plan(tokenizer, example))


def trained_spans_many(tokenizer: Any, examples: list[dict[str, Any]]) -> list[tuple[str, Spans] | Exception]:
    """``trained_spans`` of each example, or the exception it raised.

    Examples without tools are rendered together: two ``apply_chat_template`` calls for the
    whole list. If one of them cannot be rendered, each is rendered on its own again, so every
    example gets exactly the result (or the error) ``trained_spans`` gives it.
    """
    results: list[tuple[str, Spans] | Exception | None] = [None] * len(examples)
    together: list[tuple[int, _Plan]] = []
    for k, example in enumerate(examples):
        try:
            plan = _plan(tokenizer, example)
            if plan.tools:
                results[k] = _render_plan(tokenizer, plan)
            else:
                together.append((k, plan))
        except Exception as exc:
            results[k] = exc
    if together:
        try:
            closed = _render_many(tokenizer, [c for _, p in together for c in p.closed], None, False)
            opened = _render_many(tokenizer, [c for _, p in together for c in p.opened], None, True)
        except Exception:
            for k, plan in together:
                try:
                    results[k] = _render_plan(tokenizer, plan)
                except Exception as exc:
                    results[k] = exc
        else:
            eos = tokenizer.eos_token or ""
            c = o = 0
            for k, plan in together:
                nc, no = len(plan.closed), len(plan.opened)
                try:
                    results[k] = _spans(plan, closed[c : c + nc], opened[o : o + no], eos)
                except Exception as exc:
                    results[k] = exc
                c, o = c + nc, o + no
    return [r if r is not None else RuntimeError("not rendered") for r in results]


def _backend(tokenizer: Any) -> Any:
    """The Rust tokenizer behind a fast tokenizer, when calling it directly is exactly what the
    transformers call does (no truncation or padding configured, same special-token handling)."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return None
    if bool(getattr(backend, "encode_special_tokens", False)) != bool(
        getattr(tokenizer, "split_special_tokens", False)
    ):
        return None
    return backend


Tokens = tuple[list[int], list[tuple[int, int]]]  # token ids and their character offsets


class _Encodings(Sequence[Tokens]):
    """The Rust encodings of a batch, each converted to Python lists only when read (so a batch
    never holds more than one example's lists at a time)."""

    def __init__(self, encodings: list[Any]) -> None:
        self._encodings = encodings

    def __len__(self) -> int:
        return len(self._encodings)

    @overload
    def __getitem__(self, index: int) -> Tokens: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Tokens]: ...
    def __getitem__(self, index: int | slice) -> Tokens | Sequence[Tokens]:
        if isinstance(index, slice):
            return _Encodings(self._encodings[index])
        e = self._encodings[index]
        return e.ids, e.offsets


def tokenize_many(tokenizer: Any, texts: list[str]) -> Sequence[Tokens]:
    """(token ids, character offsets) of each text, without added special tokens.

    A fast tokenizer gets all texts in one ``encode_batch`` call of its Rust backend: that is
    the call transformers itself makes (it wraps a single text into a batch of one), so each
    text is encoded exactly as on its own, and the batch is spread over the CPU cores. The
    backend is called directly, skipping transformers' conversion of the whole batch to Python
    lists, only when it is configured as transformers would configure it; otherwise the public
    call, one text at a time.
    """
    if not texts:
        return []
    backend = _backend(tokenizer)
    if backend is not None:
        return _Encodings(backend.encode_batch(texts, add_special_tokens=False))
    out: list[Tokens] = []
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


def encode_tokens(spans: Spans, tokens: Tokens, max_length: int) -> EncodedExample:
    """Label the trained tokens of one tokenized text and cut it to ``max_length``."""
    ids, offsets = tokens
    labels = _labels(ids, offsets, spans)
    cut = max(0, len(ids) - max_length)
    if cut:
        ids, labels = ids[:max_length], labels[:max_length]
    return EncodedExample(input_ids=ids, labels=labels, truncated_tokens=cut)


def encode_rendered(
    tokenizer: Any, rendered: list[tuple[str, Spans]], max_length: int
) -> list[EncodedExample]:
    """Tokenize ``trained_spans`` results in one batch and label the trained tokens."""
    tokenized = tokenize_many(tokenizer, [t for t, _ in rendered])
    return [
        encode_tokens(spans, tokens, max_length)
        for (_, spans), tokens in zip(rendered, tokenized, strict=True)
    ]


def encode_chat(tokenizer: Any, example: dict[str, Any], max_length: int) -> EncodedExample:
    return encode_rendered(tokenizer, [trained_spans(tokenizer, example)], max_length)[0]
