"""A job's first ETA uses the speed measured on its base and device, then its own pace; the job
then records its own speed (services/throughput.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.store import train_speeds
from tests.support.data import chat_file
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker

SLOW = 0.01  # tokens/s "measured" by an earlier job: an ETA of hours, impossible to miss


def test_first_eta_from_the_measured_speed_then_the_job_records_its_own(
    client: openai.OpenAI, container: Any, clock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from afinar.worker.runner import JobRunner

    monkeypatch.setattr(JobRunner, "_expected_safety_seconds", lambda self, job: 0.0)
    seen: list[tuple[dict[str, Any], int | None]] = []
    on_step = JobRunner._on_step

    def record(self: JobRunner, ev: dict[str, Any]) -> None:
        if not seen:  # an earlier job measured this base on this very device, slowly
            container.throughput.record(TINY, ev["device_kind"], [SLOW], job_id="ftjob-earlier")
        on_step(self, ev)
        seen.append((ev, self.write(lambda _s, j: j).estimated_finish))

    monkeypatch.setattr(JobRunner, "_on_step", record)
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    hyper = {"n_epochs": 1, "batch_size": 5}
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid, hyperparameters=hyper)
    run_worker(container)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "succeeded"

    now = int(container.db.now())  # the fixed clock
    (first, eta1), (second, eta2) = seen
    assert first["tokens_per_second"] > 0 and second["step"] == second["total_steps"] == 2
    # Step 1: one more step of step 1's tokens at the measured speed.
    assert eta1 == int(now + first["trained_tokens"] / SLOW)
    # Step 2 (the last): its own pace, no longer the slow record.
    assert eta2 is not None and eta2 < eta1
    measured = train_speeds.latest(container.db, TINY, first["device_kind"])
    assert measured is not None and measured.job_id == job.id
    assert measured.tokens_per_second == pytest.approx(second["tokens_per_second"])  # after the first
