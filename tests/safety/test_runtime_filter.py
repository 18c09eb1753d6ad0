"""``safety.runtime.filter_stream``: windows, the overlap that catches a phrase cut in two, choices apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from afinar.errors import InvalidRequest
from afinar.inference.assemble import ChoiceDelta
from afinar.safety import runtime
from afinar.safety.moderation import ModerationEngine


class FlagPhrase:
    name = "flag-phrase-double"

    def __init__(self, phrase: str) -> None:
        self.phrase = phrase
        self.seen: list[str] = []

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        self.seen += texts
        return [{"violence": 1.0} if self.phrase in t else {} for t in texts]


def run(deltas: list[ChoiceDelta], engine: ModerationEngine, window: int) -> list[ChoiceDelta]:
    async def source() -> AsyncIterator[ChoiceDelta]:
        for d in deltas:
            yield d

    async def collect() -> list[ChoiceDelta]:
        return [d async for d in runtime.filter_stream(source(), engine, window=window)]

    return asyncio.run(collect())


def pieces(index: int, text: str, size: int = 3) -> list[ChoiceDelta]:
    return [ChoiceDelta(index, content=text[k : k + size]) for k in range(0, len(text), size)]


def test_a_phrase_cut_between_windows_is_caught_and_earlier_windows_stay_out() -> None:
    text = "0123456789 fine so far, then bad" + " thing and more"
    deltas = [
        ChoiceDelta(0, role="assistant", content=""),
        *pieces(0, text),
        ChoiceDelta(0, finish_reason="stop"),
    ]
    out = run(deltas, ModerationEngine(FlagPhrase("bad thing")), window=10)
    released = "".join(d.content or "" for d in out)
    assert out[0].role == "assistant"
    # Windows of >= 10 characters: "…then bad thi" went out clean; "ng and mo" alone is clean too,
    # but moderated with the released tail it reads "bad thing", so it is withheld.
    assert released == "0123456789 fine so far, then bad thi"
    assert out[-1].finish_reason == "content_filter" and out[-1].content is None
    assert [d.finish_reason for d in out].count("content_filter") == 1 and "stop" not in [
        d.finish_reason for d in out
    ]


def test_choices_are_filtered_apart_and_clean_ones_keep_their_finish() -> None:
    deltas = [*pieces(0, "a calm answer"), *pieces(1, "a bad thing here")]
    deltas += [ChoiceDelta(0, finish_reason="stop"), ChoiceDelta(1, finish_reason="length")]
    out = run(deltas, ModerationEngine(FlagPhrase("bad thing")), window=1000)
    by_choice = {i: [d for d in out if d.index == i] for i in (0, 1)}
    assert "".join(d.content or "" for d in by_choice[0]) == "a calm answer"
    assert by_choice[0][-1].finish_reason == "stop"
    assert [d.content for d in by_choice[1]] == [None] and by_choice[1][0].finish_reason == "content_filter"


def test_input_check_names_categories_and_reads_every_role_and_part() -> None:
    engine = ModerationEngine(FlagPhrase("bad thing"))
    clean = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    runtime.check_input(engine, clean)
    for messages in (
        [{"role": "system", "content": "a bad thing"}],
        [{"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": "bad thing"}}]}],
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "ok"}, {"type": "text", "text": "bad thing"}],
            }
        ],
    ):
        with pytest.raises(InvalidRequest) as err:
            runtime.check_input(engine, messages)
        assert err.value.code == "content_policy_violation" and err.value.param == "messages"
        assert "violence" in err.value.message
