"""Validation at scale: bounded memory (distributions, duplicates) and the batched encoding path."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from afinar.datasets import encoding, validation
from afinar.datasets.chat_template import prepare_messages
from afinar.datasets.distribution import EXACT_BELOW, Distribution
from afinar.datasets.duplicates import LIKELY, DuplicateDetector
from afinar.datasets.encoding import (
    IGNORE_INDEX,
    encode_chat,
    encode_rendered,
    trained_spans,
    trained_spans_many,
)
from afinar.datasets.report import Stats, histogram, percentile
from afinar.datasets.validation import validate_lines
from tests.support.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    directory = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    return AutoTokenizer.from_pretrained(directory)


# A template that knows tools natively (tool_calls rendered by the template, not inlined).
TOOLS_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\nTools: ' + (tools | tojson) + '<|im_end|>\n' }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% if message.tool_calls is defined %}{% for call in message.tool_calls %}"
    "{{ '\n<call>' + call['function']['name'] + ' ' + call['function']['arguments'] + '</call>' }}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# ---------------------------------------------------------------- distributions


def test_distribution_matches_sorting_below_the_exact_limit() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 10, 101, 5000):
        values = [rng.choice([rng.randint(0, 300), rng.randint(0, EXACT_BELOW - 1)]) for _ in range(n)]
        dist = Distribution().extend(values)
        assert dist.stats() == Stats.of(values)
        data = sorted(values)
        for q in (0, 1, 10, 25, 50, 90, 99, 100):
            assert dist.percentile(q) == percentile(data, q)
        assert dist.histogram() == histogram(values)


def test_distribution_is_bounded_and_close_above_the_exact_limit() -> None:
    rng = random.Random(3)
    values = [rng.randint(EXACT_BELOW, 50 * EXACT_BELOW) for _ in range(100_000)] + [5, 70]
    dist = Distribution().extend(values)
    data = sorted(values)
    stats = dist.stats()
    assert stats is not None
    assert (stats.count, stats.min, stats.max) == (len(values), 5, max(values))
    assert stats.mean == sum(values) / len(values)  # exact: a running sum
    for q in (10, 50, 90):
        assert dist.percentile(q) == pytest.approx(percentile(data, q), rel=0.004)
    # 100,000 distinct values, a few hundred counters: ~6 octaves of 128 buckets, plus 5 and 70.
    assert dist.n_buckets <= 6 * 128 + 2
    assert dist.histogram() == histogram(values)


def test_distribution_of_nothing() -> None:
    assert Distribution().stats() is None
    with pytest.raises(ValueError):
        Distribution().add(-1)


# ---------------------------------------------------------------- duplicates


def _digest(i: int) -> bytes:
    return hashlib.blake2b(str(i).encode(), digest_size=16).digest()


def test_duplicates_are_exact_and_name_the_first_example_while_the_table_grows() -> None:
    dup = DuplicateDetector()
    for i in range(20_000):
        assert dup.check(_digest(i), i + 1) is None
    for i in (0, 1, 777, 19_999):
        assert dup.check(_digest(i), 50_000 + i) == i + 1  # the first line, not the later one
    assert dup.check(_digest(20_000), 70_000) is None
    assert dup.nbytes <= 12 * 32_768  # grown to fit 20,001 keys at 3/4 load, no more


def test_past_the_cap_duplicates_are_likely_and_memory_stays_fixed() -> None:
    dup = DuplicateDetector(table_slots=64, bloom_bytes=4096)
    assert dup.exact_capacity == 48
    for i in range(48):
        assert dup.check(_digest(i), i + 1) is None
    size = dup.nbytes
    for i in range(48, 348):
        assert dup.check(_digest(i), i + 1) is None
    assert dup.nbytes == size + 4096 and dup.nbytes == 12 * 64 + 4096
    assert dup.check(_digest(5), 1000) == 6  # still exact for examples in the table
    assert dup.check(_digest(300), 1001) == LIKELY  # past the cap: the Bloom filter's answer
    for i in range(100_000, 110_000):
        dup.check(_digest(i), i)
    assert dup.nbytes == 12 * 64 + 4096


def test_detector_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        DuplicateDetector(table_slots=100)
    with pytest.raises(ValueError):
        DuplicateDetector(bloom_bytes=0)


def chat(i: int, answer: str = "Hard 99A wheels.") -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": answer},
        ]
    }


def _lines(n: int, repeats: frozenset[int] = frozenset()) -> Iterator[bytes]:
    """``n`` distinct examples, except that each line in ``repeats`` repeats the line before it."""
    for i in range(n):
        yield json.dumps(chat(i - 1 if i + 1 in repeats else i)).encode() + b"\n"


def test_a_duplicate_past_the_cap_is_reported_as_likely(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "DuplicateDetector", lambda: DuplicateDetector(64, 4096))
    report = validate_lines(_lines(200, frozenset({20, 200})))
    assert [(p.example, p.code, p.message) for p in report.warnings] == [
        (20, "duplicate_example", "Example 20 is a duplicate of example 19."),
        (200, "duplicate_example", "Example 200 is likely a duplicate of an earlier example."),
    ]


def _peak(lines: Iterator[bytes], **kw: Any) -> tuple[int, Any]:
    tracemalloc.start()
    try:
        report = validate_lines(lines, **kw)
        return tracemalloc.get_traced_memory()[1], report
    finally:
        tracemalloc.stop()


def test_validation_memory_does_not_grow_with_the_number_of_examples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small duplicate table makes the cap reachable in a unit test; the default one stops
    # growing at 6 MiB plus a 4 MiB filter in just the same way.
    monkeypatch.setattr(validation, "DuplicateDetector", lambda: DuplicateDetector(1024, 1 << 16))
    small, small_report = _peak(_lines(2_000))
    large, large_report = _peak(_lines(10_000))
    assert small_report.ok and large_report.n_examples == 10_000
    # The old validator kept ~150 bytes per example: 8,000 more examples were ~1.2 MB more.
    assert large - small < 100_000, (small, large)


# ---------------------------------------------------------------- the batched encoding path


def reference_encode(
    tokenizer: Any, example: dict[str, Any], max_length: int
) -> tuple[list[int], list[int], int]:
    """The straightforward encoding: render every prefix on its own, tokenize one text, label by
    character overlap (what ``encode_chat`` did before it rendered prefixes in batches)."""
    tools = example.get("tools")
    raw = example["messages"]
    messages = prepare_messages(raw, tools, tokenizer.chat_template)

    def render(msgs: list[dict[str, Any]], gen: bool) -> str:
        kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": gen}
        if tools:
            kwargs["tools"] = tools
        return str(tokenizer.apply_chat_template(msgs, **kwargs))

    text = render(messages, False)
    shift = len(messages) - len(raw)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or raw[i - shift].get("weight", 1) == 0:
            continue
        before = render(messages[:i], True) if i else ""
        through = render(messages[: i + 1], False)
        assert text.startswith(through) and through.startswith(before)
        eos_at = through.rfind(tokenizer.eos_token, len(before))
        spans.append((len(before), eos_at + len(tokenizer.eos_token)))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [
        t if any(e > a and s < end for a, end in spans) else IGNORE_INDEX
        for t, (s, e) in zip(ids, enc["offset_mapping"], strict=True)
    ]
    cut = max(0, len(ids) - max_length)
    return ids[:max_length], labels[:max_length], cut


CALL = {"id": "c1", "type": "function", "function": {"name": "stock", "arguments": '{"sku": "w54"}'}}
TOOLS = [{"type": "function", "function": {"name": "stock", "parameters": {"type": "object"}}}]


def varied_conversations() -> list[dict[str, Any]]:
    def m(role: str, content: Any, **kw: Any) -> dict[str, Any]:
        return {"role": role, "content": content, **kw}

    return [
        chat(1),
        {"messages": [m("user", "hi"), m("assistant", "hello")]},
        {"messages": [m("assistant", "I start."), m("user", "ok"), m("assistant", "fine")]},
        {
            "messages": [
                m("developer", "Be terse."),
                m("user", "a"),
                m("assistant", "first", weight=0),
                m("user", "b"),
                m("assistant", "second", weight=1),
                m("user", "c"),
                m("assistant", "third"),
            ]
        },
        {"messages": [m("system", "s"), m("user", "q"), m("assistant", "never trained", weight=0)]},
        {
            "messages": [
                m("system", "Use tools."),
                m("user", [{"type": "text", "text": "Do you have "}, {"type": "text", "text": "54 mm?"}]),
                m("assistant", None, tool_calls=[CALL]),
                m("tool", "12 in stock", tool_call_id="c1"),
                m("assistant", "Yes, twelve.", weight=1),
            ],
            "tools": TOOLS,
        },
        {"messages": [m("user", "no system, tools only"), m("assistant", "ok")], "tools": TOOLS},
        {"messages": [m("user", "long " * 80), m("assistant", "answer " * 80)]},
    ]


@pytest.mark.parametrize("native_tools", [False, True])
@pytest.mark.parametrize("max_length", [10**9, 40])
def test_batched_encoding_equals_the_reference(tokenizer: Any, native_tools: bool, max_length: int) -> None:
    tok = copy.deepcopy(tokenizer)
    if native_tools:
        tok.chat_template = TOOLS_TEMPLATE
    assert encoding._backend(tok) is not None  # the direct Rust batch call is what is compared
    examples = varied_conversations()
    batched = encode_rendered(tok, [trained_spans(tok, ex) for ex in examples], max_length)
    for example, fast in zip(examples, batched, strict=True):
        ids, labels, cut = reference_encode(tok, example, max_length)
        one = encode_chat(tok, example, max_length)
        assert (fast.input_ids, fast.labels, fast.truncated_tokens) == (ids, labels, cut)
        assert (one.input_ids, one.labels, one.truncated_tokens) == (ids, labels, cut)
    assert any(e.truncated_tokens for e in batched) == (max_length == 40)
    assert batched[4].n_trained == 0


def test_report_is_the_same_whatever_the_batch_size(tokenizer: Any) -> None:
    examples = varied_conversations() * 3
    raw = [json.dumps(e).encode() for e in examples]
    raw.insert(5, b"{broken")
    reports = [
        validate_lines(iter(raw), tokenizer=tokenizer, context_length=60, batch_examples=b).to_dict()
        for b in (1, 4, 1000)
    ]
    assert reports[0] == reports[1] == reports[2]
    expected = [reference_encode(tokenizer, e, 60) for e in examples]
    assert reports[0]["billable_tokens_per_epoch"] == sum(len(ids) for ids, _, _ in expected)
    assert reports[0]["trained_tokens"] == sum(
        sum(1 for x in labels if x != IGNORE_INDEX) for _, labels, _ in expected
    )
    assert reports[0]["truncated_tokens"] == sum(cut for _, _, cut in expected) > 0
    # Problems stay in file order, the truncation warning after the example's other warnings.
    lines = [w["example"] for w in reports[0]["warnings"]]
    assert lines == sorted(lines)
    assert reports[0]["errors"][0]["example"] == 6


def test_one_example_the_template_refuses_does_not_spoil_its_batch(tokenizer: Any) -> None:
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = (
        "{% for message in messages %}{% if message['content'] == 'boom' %}"
        "{{ raise_exception('cannot render boom') }}{% endif %}{% endfor %}" + tokenizer.chat_template
    )
    examples = [chat(1), chat(2, answer="boom"), chat(3), {**chat(4), "tools": TOOLS}]
    results = trained_spans_many(tok, examples)
    assert isinstance(results[1], Exception) and "cannot render boom" in str(results[1])
    for example, result in zip(examples, results, strict=True):
        if example is not examples[1]:
            assert result == trained_spans(tok, example)
    raw = [json.dumps(e).encode() for e in examples]
    report = validate_lines(iter(raw), tokenizer=tok, context_length=10**6)
    assert [(p.example, p.code, p.message) for p in report.errors] == [
        (
            2,
            "render_error",
            "Example 2 cannot be rendered with the base model's chat template: cannot render boom.",
        )
    ]
    assert report.n_tokenized == 3


class _RefusesSomeTexts:
    """A slow-tokenizer stand-in (no Rust batch call) that cannot tokenize one marked text."""

    is_fast = False

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __call__(self, text: Any, **kwargs: Any) -> Any:
        if isinstance(text, str) and "tokenizer-refuses" in text:
            raise ValueError("cannot tokenize this")
        return self._inner(text, **kwargs)


def test_a_text_the_tokenizer_refuses_fails_alone_and_the_slow_path_counts_the_same(tokenizer: Any) -> None:
    examples = [chat(1), chat(2, answer="tokenizer-refuses"), chat(3)]
    raw = [json.dumps(e).encode() for e in examples]
    report = validate_lines(iter(raw), tokenizer=_RefusesSomeTexts(tokenizer), context_length=10**6)
    assert [(p.example, p.code, p.message) for p in report.errors] == [
        (
            2,
            "render_error",
            "Example 2 cannot be rendered with the base model's chat template: cannot tokenize this.",
        )
    ]
    fast = validate_lines(iter([raw[0], raw[2]]), tokenizer=tokenizer, context_length=10**6)
    assert report.n_tokenized == 2 and report.total_tokens == fast.total_tokens
    assert report.trained_tokens == fast.trained_tokens


def test_validate_file_also_takes_an_iterable_of_lines(tmp_path: Any) -> None:
    raw = [json.dumps(chat(i)).encode() + b"\n" for i in range(3)]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(raw))
    from_lines = validation.validate_file(iter(raw))
    assert from_lines == validation.validate_file(path) and from_lines.n_examples == 3


def test_batches_of_long_examples_stay_small_in_memory(tokenizer: Any) -> None:
    answer = "Hard wheels around 99A are best for street, soft ones for rough roads. " * 110
    raw = [json.dumps(chat(i, answer=answer)).encode() for i in range(120)]  # ~1 MB, ~0.5M tokens
    peak, report = _peak(iter(raw), tokenizer=tokenizer, context_length=10**6)
    assert report.ok and report.n_tokenized == 120
    per_example = report.total_tokens // 120
    assert per_example > 3_000
    # Whole-batch token lists would take ~150 bytes a token, ~70 MB here; one example's, ~0.5 MB.
    assert peak < 8_000_000, (peak, report.total_tokens)
