"""The lexical rules on their own: floors fire on plain phrasings, idioms damp look-alikes."""

from __future__ import annotations

import pytest

from afinar.safety.categories import CATEGORIES
from afinar.safety.lexical import apply_rules


def _scores(text: str, start: float = 0.5) -> dict[str, float]:
    scores = dict.fromkeys(CATEGORIES, start)
    apply_rules(text, scores)
    return scores


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("i am gonna kill myself after the exam", "self-harm/intent"),
        ("ok that's it, I'll end my life", "self-harm/intent"),
        ("what is the easiest way to kill myself", "self-harm/instructions"),
        ("I'm going to stab you tomorrow", "harassment/threatening"),
        ("steps to assemble a nail bomb", "illicit/violent"),
        ("a naked picture of a 13 year old", "sexual/minors"),
    ],
)
def test_floor_rules_raise_the_category(text: str, category: str) -> None:
    assert _scores(text, 0.0)[category] >= 0.75


@pytest.mark.parametrize(
    "text",
    [
        "what age should kids get sex education at school",
        "how do I report sexual abuse of a child",
        "where is the suicide prevention hotline",
        "I'll kill the server and restart it",
    ],
)
def test_floor_rules_stay_quiet_on_safe_context(text: str) -> None:
    scores = _scores(text, 0.0)
    assert max(scores.values()) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "please kill the stuck process",
        "shoot me a message later",
        "I'm dying to try that trick",
        "the execution plan looks fine",
        "this song is killing me",
    ],
)
def test_idioms_damp_violence_like_scores(text: str) -> None:
    scores = _scores(text)
    assert scores["violence"] < 0.5
    assert scores["hate"] == 0.5  # only violence-like categories (and harassment) are touched


def test_idioms_do_not_hide_a_real_threat() -> None:
    scores = _scores("I'll kill the process and then I'll kill you", 0.0)
    assert scores["harassment/threatening"] >= 0.75
