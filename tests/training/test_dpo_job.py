"""A DPO job end to end through the official SDK: created with ``method={"type": "dpo", ...}``,
validated, trained by the worker's child process, gated and published, billed as estimated."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.services.results import PREFERENCE_COLUMNS
from tests.support.dashboard import sign_in
from tests.support.data import chat_file, write_jsonl
from tests.support.preference import preference_rows
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker

DPO = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 1, "batch_size": 4}}}


def _upload(client: openai.OpenAI, path: Path) -> str:
    return client.files.create(file=path.open("rb"), purpose="fine-tune").id


def test_dpo_job_trains_reports_its_metrics_and_bills_the_estimate(
    client: openai.OpenAI, container: Any, http: Any, tmp_path: Path
) -> None:
    train = _upload(client, write_jsonl(tmp_path / "train.jsonl", preference_rows(range(12))))
    valid = _upload(client, write_jsonl(tmp_path / "valid.jsonl", preference_rows(range(50, 53))))
    body = {"model": TINY, "training_file": train, "method": DPO}
    estimate: dict[str, Any] = client.post("/afinar/estimates", cast_to=object, body=body)  # type: ignore[assignment]
    created = client.fine_tuning.jobs.create(
        model=TINY, training_file=train, validation_file=valid, method=DPO, seed=3
    )
    assert created.method is not None and created.method.type == "dpo" and created.method.dpo is not None
    requested = created.method.dpo.hyperparameters
    assert requested is not None and requested.beta == 0.2 and requested.learning_rate_multiplier == "auto"

    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(created.id)
    assert job.status == "succeeded", job.error
    assert job.trained_tokens == estimate["billable_tokens"] and estimate["n_steps"] == 3
    assert job.method is not None and job.method.dpo is not None
    resolved = job.method.dpo.hyperparameters
    assert resolved is not None
    assert (resolved.beta, resolved.n_epochs, resolved.batch_size) == (0.2, 1, 4)
    assert isinstance(resolved.learning_rate_multiplier, float)

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    steps = sorted((e.data for e in events if e.type == "metrics" and e.data), key=lambda d: d["step"])
    assert [d["step"] for d in steps] == [1, 2, 3]
    assert steps[0]["dpo_loss"] == pytest.approx(math.log(2), abs=1e-6)  # the policy starts as the reference
    assert all(0.0 <= d["preference_accuracy"] <= 1.0 and "reward_margin" in d for d in steps)
    assert "valid_reward_margin" in steps[-1] and "full_valid_preference_accuracy" in steps[-1]
    assert any(e.type == "moderation_checks" for e in events)  # the safety gate judged the adapter

    [ckpt] = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert ckpt.step_number == 3 and ckpt.metrics.train_loss == steps[-1]["dpo_loss"]
    card = client.get(f"/afinar/models/{job.fine_tuned_model}/card", cast_to=object)
    assert card["method"]["type"] == "dpo" and card["hyperparameters"]["beta"] == 0.2  # type: ignore[index]
    assert card["checks"]["safety"]["passed"] is True  # type: ignore[index]

    [result] = job.result_files
    rows = base64.b64decode(client.files.content(result).read()).decode().splitlines()
    header = rows[0].split(",")
    assert header[-len(PREFERENCE_COLUMNS) :] == list(PREFERENCE_COLUMNS) and len(rows) == 4
    assert rows[-1].split(",")[header.index("reward_margin")] != ""

    assert sign_in(http).status_code == 303
    chart = http.get(f"/jobs/{job.id}/metrics.json").json()
    assert chart["reward_margin"] == [d["reward_margin"] for d in steps]
    assert chart["preference_accuracy"] == [d["preference_accuracy"] for d in steps]


def test_a_chat_file_under_dpo_fails_the_job_naming_the_mismatch(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    train = _upload(client, chat_file(tmp_path / "chat.jsonl", 12))
    job = client.fine_tuning.jobs.create(model=TINY, training_file=train, method={"type": "dpo"})
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error is not None
    assert job.error.code == "invalid_training_file" and "provided method=dpo" in job.error.message
    with pytest.raises(openai.BadRequestError, match="beta"):
        client.fine_tuning.jobs.create(
            model=TINY, training_file=train, method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 3}}}
        )
