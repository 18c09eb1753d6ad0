"""Short work never waits behind long work (docs/architecture.md, "Worker lanes").

A worker with its lanes on threads, as ``afinar serve`` and ``afinar worker`` run it: while one
organisation's job trains slowly, another organisation's invalid job fails validation, its file
report answers and its eval run completes; the training organisation's own new jobs are validated
at once too (an invalid one fails, a valid one waits, queued, for its organisation's slot).
Everything is asserted on states, never on timings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai

from afinar.services.orgs import create_org
from afinar.worker.loop import Worker
from tests.support.data import chat_file
from tests.support.evals import EXACT_MATCH, jsonl_source, make_eval
from tests.support.tiny_model import TINY
from tests.support.wait import wait_for

TERMINAL = ("succeeded", "failed", "cancelled")


def upload(client: openai.OpenAI, path: Path, n: int) -> str:
    return client.files.create(file=chat_file(path, n).open("rb"), purpose="fine-tune").id


def status(client: openai.OpenAI, job_id: str) -> str:
    return client.fine_tuning.jobs.retrieve(job_id).status


def test_short_work_never_waits_behind_training(
    client: openai.OpenAI, container: Any, http: Any, tmp_path: Path
) -> None:
    s = container.settings
    s.train_step_delay_seconds = 0.5  # 600 steps: minutes of training, cancelled at the end
    s.safety_screen = False  # not under test here; it loads the moderation models
    s.safety_eval = False
    s.max_concurrent_jobs_per_org = 1
    s.worker_training_slots, s.worker_short_slots = 1, 2
    train_a = upload(client, tmp_path / "a.jsonl", 12)
    slow = client.fine_tuning.jobs.create(
        model=TINY, training_file=train_a, hyperparameters={"n_epochs": 50, "batch_size": 1}
    )
    worker = Worker(container, name="lanes")
    worker.start()
    waiting: list[str] = [slow.id]
    try:
        wait_for(lambda: status(client, slow.id) == "running", timeout=300)

        _, key = create_org(container.db, "other")
        other = openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)
        few = upload(other, tmp_path / "b.jsonl", 6)
        short = other.fine_tuning.jobs.create(model=TINY, training_file=few)
        report: Any = other.get(
            f"/afinar/files/{few}/report", cast_to=object, options={"params": {"model": TINY}}
        )  # answered in the request, whatever the worker does
        assert report["job_error"]["code"] == "invalid_n_examples"
        ev = make_eval(other, [EXACT_MATCH])
        run = other.evals.runs.create(
            ev.id,
            data_source=jsonl_source([({"question": "q", "answer": "a"}, "a")]),  # type: ignore[arg-type]
        )
        # The training organisation's own new jobs: validated at once as well.
        bad = client.fine_tuning.jobs.create(
            model=TINY, training_file=upload(client, tmp_path / "c.jsonl", 6)
        )
        valid = client.fine_tuning.jobs.create(model=TINY, training_file=train_a)
        waiting.append(valid.id)

        wait_for(lambda: status(other, short.id) in TERMINAL, timeout=300)
        wait_for(lambda: other.evals.runs.retrieve(run.id, eval_id=ev.id).status == "completed", timeout=300)
        wait_for(lambda: status(client, bad.id) in TERMINAL, timeout=300)
        wait_for(lambda: status(client, valid.id) == "queued", timeout=300)
        assert status(client, slow.id) == "running"  # all of it happened while A trained

        for sdk, job_id in ((other, short.id), (client, bad.id)):
            job = sdk.fine_tuning.jobs.retrieve(job_id)
            assert job.status == "failed" and job.error is not None
            assert job.error.code == "invalid_n_examples" and job.error.param == "training_file"
        messages = [e.message for e in client.fine_tuning.jobs.list_events(valid.id)]
        assert "Files validated, moving job to queued state" in messages
        assert "Fine-tuning job started" not in messages  # it waits for the organisation's slot
    finally:
        for job_id in waiting:
            if status(client, job_id) not in TERMINAL:
                client.fine_tuning.jobs.cancel(job_id)
        worker.shutdown()


def test_a_validated_job_is_trained_by_the_training_lane(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    """The same job through both lanes, driven step by step: validation releases it, queued."""
    container.settings.safety_eval = False
    job = client.fine_tuning.jobs.create(
        model=TINY, training_file=upload(client, tmp_path / "t.jsonl", 10), hyperparameters={"n_epochs": 1}
    )
    worker = Worker(container)
    assert worker.train_once() is False  # nothing validated yet
    assert worker.validate_once() is True
    assert status(client, job.id) == "queued"
    assert worker.validate_once() is False
    assert worker.train_once() is True
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)][::-1]
    validated = messages.index("Files validated, moving job to queued state")
    assert messages.index("Fine-tuning job started") == validated + 1
