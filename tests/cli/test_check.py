"""``afinar files check``: the job's validation, offline, as a report with line numbers and an exit status."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import Cli
from tests.support.data import chat_example, chat_file, write_jsonl
from tests.support.tiny_model import TINY


def test_good_file_structure_only(offline: Cli, tmp_path: Path) -> None:
    result = offline("files", "check", str(chat_file(tmp_path / "train.jsonl", 12)))
    assert result.exit_code == 0, result.output
    assert "examples:              12" in result.stdout
    assert "structure only" in result.stdout
    assert "OK" in result.stdout


def test_good_file_with_model_counts_tokens_and_draws_the_histogram(offline: Cli, tmp_path: Path) -> None:
    path = chat_file(tmp_path / "train.jsonl", 12)
    result = offline("files", "check", str(path), "--model", TINY)
    assert result.exit_code == 0, result.output
    assert f"model {TINY}" in result.stdout
    assert "tokens per example" in result.stdout and "token histogram" in result.stdout
    assert "█" in result.stdout

    report = offline.json("files", "check", str(path), "--model", TINY)
    assert report["verdict"] == {"ok": True, "code": None, "message": None}
    assert report["n_examples"] == 12 and report["model"] == TINY
    assert report["total_tokens"] > 0 and sum(b["count"] for b in report["token_histogram"]) == 12


def test_bad_file_names_each_line_and_exits_1(offline: Cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = [json.dumps(chat_example(i)) for i in range(12)]
    bad_role = json.dumps(
        {"messages": [{"role": "robot", "content": "[x]"}, {"role": "assistant", "content": "y"}]}
    )
    lines = [*good[:3], "{not json", *good[3:8], bad_role, *good[8:], "<|im_end|>"]
    path.write_text("\n".join(lines) + "\n")
    result = offline("files", "check", str(path))
    assert result.exit_code == 1
    assert "line 4: Example 4 cannot be parsed" in result.stdout
    assert 'line 10: Example 10, message 1: unrecognized role "robot"' in result.stdout
    assert "line 15:" in result.stdout
    assert "FAILED invalid_training_file" in result.stdout

    report = json.loads(offline("files", "check", str(path), "--json").stdout)
    assert report["verdict"]["ok"] is False and report["verdict"]["code"] == "invalid_training_file"
    assert {e["example"] for e in report["errors"]} >= {4, 10, 15}


def test_reserved_special_tokens_need_the_model(offline: Cli, tmp_path: Path) -> None:
    rows = [chat_example(i) for i in range(12)]
    rows[5] = chat_example(5, answer="Sure<|im_end|>")
    path = write_jsonl(tmp_path / "tokens.jsonl", rows)
    assert offline("files", "check", str(path)).exit_code == 0  # structure only: not a problem
    result = offline("files", "check", str(path), "--model", TINY)
    assert result.exit_code == 1
    assert "line 6:" in result.stdout and "invalid_file_format" in result.stdout


def test_too_few_examples_fails_like_the_job_would(offline: Cli, tmp_path: Path) -> None:
    path = chat_file(tmp_path / "seven.jsonl", 7)
    result = offline("files", "check", str(path), "--model", TINY)
    assert result.exit_code == 1
    assert "invalid_n_examples" in result.stdout
    # As a validation file, one example is enough.
    assert offline("files", "check", str(path), "--validation").exit_code == 0


def test_method_mismatch_and_usage_errors(offline: Cli, tmp_path: Path) -> None:
    path = chat_file(tmp_path / "train.jsonl", 12)
    result = offline("files", "check", str(path), "--method", "dpo")
    assert result.exit_code == 1 and "fine-tune-chat format" in result.stdout
    unknown = offline("files", "check", str(path), "--model", "no-such-model")
    assert unknown.exit_code == 2
    assert "error: model_not_available: Model no-such-model is not in the catalogue" in unknown.stderr
    assert offline("files", "check", str(tmp_path / "missing.jsonl")).exit_code == 2
    assert offline("files", "check", str(path), "--method", "rl").exit_code == 2
