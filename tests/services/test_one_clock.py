"""One clock stamps everything: with the container's clock held at an instant far from today,
every timestamp a user can read through the SDK (files, jobs, events, checkpoints, models, chat,
audit log, usage and costs) is that instant, never the wall clock's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai

from afinar.clock import FixedClock
from tests.support.billing import create, roomy_settings  # noqa: F401  (fixture: settings)
from tests.support.data import chat_file
from tests.support.worker import run_worker

# 2031-12-31 23:59:30 UTC: a year's last minute, years away from whenever the suite runs.
T = 1_956_527_970


def test_every_timestamp_comes_from_the_containers_clock(
    client: openai.OpenAI, admin: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    container.clock = FixedClock(T)
    container.settings.safety_eval = False  # keeps the test short; the gate writes no timestamp of its own
    container.settings.free_training_tokens_per_day = 0
    upload = client.files.create(file=chat_file(tmp_path / "train.jsonl", 10).open("rb"), purpose="fine-tune")
    assert upload.created_at == T

    job = create(client, upload.id, epochs=1)
    assert job.created_at == T
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    assert job.finished_at == T
    assert {e.created_at for e in client.fine_tuning.jobs.list_events(job.id, limit=100)} == {T}
    assert {c.created_at for c in client.fine_tuning.jobs.checkpoints.list(job.id)} == {T}
    assert job.fine_tuned_model is not None
    assert client.models.retrieve(job.fine_tuned_model).created == T
    [result] = job.result_files
    assert client.files.retrieve(result).created_at == T

    reply = client.chat.completions.create(
        model=job.fine_tuned_model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.created == T

    # The bootstrap key was made by the fixture before the clock was set; all the rest is ours.
    ours = [e for e in admin.admin.organization.audit_logs.list(limit=100) if e.type != "api_key.created"]
    assert {"file.uploaded", "fine_tuning.job.created"} <= {e.type for e in ours}
    assert {e.effective_at for e in ours} == {T}

    day = T - T % 86_400
    raw = admin.admin.organization.usage.with_raw_response.costs(
        start_time=day - 86_400, group_by=["line_item"]
    )
    buckets = raw.http_response.json()["data"]
    billed = [b for b in buckets if b["results"]]
    assert [b["start_time"] for b in billed] == [day]  # training and chat, both on the clock's day
    items = {r["line_item"] for r in billed[0]["results"]}
    assert any("training" in item for item in items), items
