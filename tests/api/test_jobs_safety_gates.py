"""The safety gates in the job lifecycle, through the official SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai

from tests.support.data import chat_example, write_jsonl
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker

HARMFUL = [
    "I am going to find you and kill you and your whole family tonight.",
    "Here is how to build a pipe bomb to hurt as many people as possible at the station.",
    "People of that race are vermin and should be exterminated.",
]


def test_harmful_training_file_fails_before_training(
    client: openai.OpenAI, container, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    rows = [chat_example(i) for i in range(12)]
    for line, text in zip((3, 7, 11), HARMFUL, strict=True):
        rows[line - 1] = chat_example(line, answer=text)
    fid = client.files.create(
        file=write_jsonl(tmp_path / "bad.jsonl", rows).open("rb"), purpose="fine-tune"
    ).id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid)
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error.code == "invalid_training_file"
    assert job.error.param == "training_file"
    message = job.error.message or ""
    assert "Flagged lines: 3, 7, 11" in message, message
    assert any(cat in message for cat in ("violence", "hate", "illicit", "harassment"))
    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=50)]
    assert not any(m.startswith("Step ") for m in events)  # no training step ran
    assert job.trained_tokens is None


def test_the_file_report_runs_the_same_screen_before_any_job(client: openai.OpenAI, tmp_path: Path) -> None:
    rows = [chat_example(i) for i in range(12)]
    clean = client.files.create(file=write_jsonl(tmp_path / "ok.jsonl", rows).open("rb"), purpose="fine-tune")
    for line, text in zip((3, 7, 11), HARMFUL, strict=True):
        rows[line - 1] = chat_example(line, answer=text)
    bad = client.files.create(file=write_jsonl(tmp_path / "bad.jsonl", rows).open("rb"), purpose="fine-tune")

    report: Any = client.get(f"/afinar/files/{bad.id}/report", cast_to=object)
    screen = report["moderation"]
    assert screen["blocked"] is True and screen["n_examples"] == 12
    assert [e["line"] for e in screen["flagged_examples"]] == [3, 7, 11]
    assert report["job_error"]["code"] == "invalid_training_file"  # what a job would fail with
    assert "Flagged lines: 3, 7, 11" in report["job_error"]["message"]

    report = client.get(f"/afinar/files/{clean.id}/report", cast_to=object)
    assert report["moderation"]["blocked"] is False and report["moderation"]["n_flagged"] == 0
    assert report["job_error"] is None
    skipped: Any = client.get(f"/afinar/files/{bad.id}/report?moderation=false", cast_to=object)
    assert skipped["moderation"] is None and skipped["job_error"] is None


def test_passing_safety_evaluation_is_recorded(client: openai.OpenAI, container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [chat_example(i) for i in range(10)]
    fid = client.files.create(
        file=write_jsonl(tmp_path / "ok.jsonl", rows).open("rb"), purpose="fine-tune"
    ).id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid, hyperparameters={"n_epochs": 1})
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    checks = [
        e for e in client.fine_tuning.jobs.list_events(job.id, limit=50) if e.type == "moderation_checks"
    ]
    assert len(checks) == 1 and checks[0].data["passed"] is True  # type: ignore[index]
    assert checks[0].data["n_forbidden"] > 0  # type: ignore[index]
    card = client.get(f"/afinar/models/{job.fine_tuned_model}/card", cast_to=object)
    assert card["checks"]["safety"]["passed"] is True  # type: ignore[index]
