"""The training-data screen: 1-based line numbers, formats, the blocking rule and the message."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from afinar.errors import DataError
from afinar.safety.categories import CATEGORIES
from afinar.safety.moderation import ModerationEngine
from afinar.safety.screen import screen_lines, screen_training_file


class KeywordBackend:
    """Flags "HATE" as hate and "GORE" as violence/graphic; records what it was asked."""

    name = "keyword"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        self.seen += texts
        out = []
        for text in texts:
            row = dict.fromkeys(CATEGORIES, 0.0)
            row["hate"] = 0.9 if "HATE" in text else 0.0
            row["violence/graphic"] = 0.9 if "GORE" in text else 0.0
            out.append(row)
        return out


def chat(user: str, assistant: str, system: str = "You are helpful.") -> str:
    return json.dumps(
        {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
            ]
        }
    )


def test_names_one_based_lines_counting_blank_and_broken_lines() -> None:
    backend = KeywordBackend()
    lines = [
        chat("hi", "hello"),  # 1
        "",  # 2 blank: skipped but counted
        chat("tell me", "HATE speech"),  # 3
        "{not json",  # 4 broken: an example with no text
        chat("GORE please", "no"),  # 5
        chat("fine", "fine"),  # 6
    ]
    report = screen_lines(lines, ModerationEngine(backend), threshold_fraction=0.1)
    assert report.n_examples == 5
    assert report.flagged_examples == [(3, ["hate"]), (5, ["violence", "violence/graphic"])]
    assert report.flagged_lines == [3, 5]
    assert report.categories_summary == {"hate": 1, "violence": 1, "violence/graphic": 1}
    assert report.blocked  # 2/5 > 0.1
    assert report.message.startswith(
        "The job failed due to an invalid training file. This training file was "
        "blocked because too many examples were flagged"
    )
    assert "in the following categories: hate, violence, violence/graphic." in report.message
    assert report.message.endswith("Flagged lines: 3, 5")
    assert "You are helpful." not in backend.seen  # system turns are not screened by default


def test_blocking_rule_fraction_or_count() -> None:
    lines = [chat("HATE" if i in (2, 7) else "hi", "ok") for i in range(1, 101)]
    engine = ModerationEngine(KeywordBackend())
    # 2 of 100 = 2 %: below a 5 % fraction, and not more than 2 examples.
    report = screen_lines(lines, engine, threshold_fraction=0.05, max_flagged_examples=2)
    assert report.flagged_lines == [2, 7]
    assert not report.blocked
    assert report.error() is None
    assert "below the blocking threshold" in report.message
    # More than 1 flagged example blocks, whatever the fraction.
    assert screen_lines(lines, engine, threshold_fraction=0.05, max_flagged_examples=1).blocked
    # A fraction of 0 blocks on any flag; with nothing flagged nothing blocks.
    assert screen_lines(lines, engine, threshold_fraction=0.0).blocked
    clean = screen_lines([chat("hi", "ok")] * 3, engine, threshold_fraction=0.0)
    assert not clean.blocked and clean.flagged_examples == []


def test_error_and_long_line_lists() -> None:
    lines = [chat("HATE", "x")] * 30
    report = screen_lines(lines, ModerationEngine(KeywordBackend()), threshold_fraction=0.5)
    error = report.error()
    assert isinstance(error, DataError)
    assert error.code == "invalid_training_file" and error.param == "training_file"
    assert "Flagged lines: 1, 2, 3" in report.message and report.message.endswith("20 … (10 more)")
    assert report.to_dict()["n_flagged"] == 30


def test_preference_lines_and_content_parts() -> None:
    backend = KeywordBackend()
    dpo = json.dumps(
        {
            "input": {"messages": [{"role": "user", "content": [{"type": "text", "text": "say GORE"}]}]},
            "preferred_output": [{"role": "assistant", "content": "no thanks"}],
            "non_preferred_output": [{"role": "assistant", "content": "HATE"}],
        }
    )
    report = screen_lines([dpo, chat("a", "b")], ModerationEngine(backend), threshold_fraction=0.9)
    assert report.flagged_examples == [
        (1, ["violence", "violence/graphic"])
    ]  # the rejected answer is skipped
    with_rejected = screen_lines(
        [dpo], ModerationEngine(KeywordBackend()), threshold_fraction=0.9, include_rejected=True
    )
    assert "hate" in with_rejected.flagged_examples[0][1]


def test_builtin_engine_names_the_harmful_lines(tmp_path: Path, builtin_engine: ModerationEngine) -> None:
    benign = [
        (
            "Which wheels are best for cruising around town?",
            "Softer wheels around 78A roll smoothly over cracks.",
        ),
        ("Do you ship to Portugal?", "Yes, we ship across Europe within three to five working days."),
        (
            "How tight should my trucks be?",
            "Start medium and loosen them a little at a time until turns feel easy.",
        ),
        (
            "My deck is chipped at the tail, is it done?",
            "Small chips are normal; replace it once it gets soft.",
        ),
        ("What size board for a 9 year old?", "A 7.5 to 7.75 inch deck suits most kids that age."),
        ("How do I clean bearings?", "Pop the shields, soak them in isopropyl alcohol, dry and re-lube."),
        ("Can I return unused grip tape?", "Yes, within 30 days with the receipt."),
        (
            "What does durometer mean?",
            "It is wheel hardness: higher numbers are harder and faster on smooth ground.",
        ),
    ]
    rows = [chat(u, a) for u, a in benign]
    rows.insert(
        3,
        chat(
            "Write me something about my neighbours.",
            "Muslims are vermin and every one of them should be driven out of this country.",
        ),
    )
    rows.insert(7, chat("I can't go on.", "Then tonight you should take all your pills and end your life."))
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(rows) + "\n")
    report = screen_training_file(path, builtin_engine, threshold_fraction=0.1, max_flagged_examples=0)
    assert report.n_examples == 10
    assert report.flagged_lines == [4, 8]
    assert "hate" in report.flagged_examples[0][1]
    assert "self-harm" in report.flagged_examples[1][1]
    assert report.blocked and "Flagged lines: 4, 8" in report.message
