"""What a finished job leaves, as OpenAI serves it: the base64 results CSV, the full validation loss
on the last step and in the last checkpoint's metrics, and ``integrations: []``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import openai

from tests.support.dashboard import sign_in
from tests.support.data import chat_file
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker

HEADER = "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"


def _dashboard_csv(http: Any, job_id: str) -> str:
    """The CSV the dashboard's job page links to (always plain text)."""
    assert sign_in(http).status_code == 303
    assert f'href="/jobs/{job_id}/results.csv"' in http.get(f"/jobs/{job_id}").text
    got = http.get(f"/jobs/{job_id}/results.csv")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    return str(got.text)


def _job(client: openai.OpenAI, tmp_path: Path, *, validation: bool) -> Any:
    train = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune")
    valid = (
        client.files.create(file=chat_file(tmp_path / "v.jsonl", 3).open("rb"), purpose="fine-tune").id
        if validation
        else None
    )
    return client.fine_tuning.jobs.create(
        model=TINY,
        training_file=train.id,
        validation_file=valid,
        seed=5,
        hyperparameters={"n_epochs": 1, "batch_size": 5},  # two steps
    )


def test_results_csv_is_base64_and_the_last_step_has_the_full_validation_loss(
    client: openai.OpenAI, container: Any, http: Any, tmp_path: Path
) -> None:
    created = _job(client, tmp_path, validation=True)
    assert created.integrations == []  # OpenAI answers [] when none was given, not null
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(created.id)
    assert job.status == "succeeded", job.error
    assert job.integrations == [] and next(iter(client.fine_tuning.jobs.list())).integrations == []

    [result_id] = job.result_files
    assert client.files.retrieve(result_id).purpose == "fine-tune-results"
    raw = client.files.content(result_id).read()
    assert not raw.startswith(b"step")  # base64, as OpenAI serves it
    rows = base64.b64decode(raw).decode().splitlines()  # what OpenAI's cookbook does
    assert rows[0] == HEADER and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    assert rows[-1].split(",")[3] != ""  # validation ran on the last step

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    steps = [e for e in events if e.type == "metrics"]
    last = next(e for e in steps if e.data and e.data["step"] == 2)  # type: ignore[index]
    assert last.message.startswith("Step 2/2: training loss=")
    assert ", validation loss=" in last.message and ", full validation loss=" in last.message
    data: dict[str, Any] = last.data  # type: ignore[assignment]
    assert data["full_valid_loss"] > 0 and 0.0 <= data["full_valid_mean_token_accuracy"] <= 1.0
    assert f"full validation loss={data['full_valid_loss']:.4f}" in last.message
    first = next(e for e in steps if e.data and e.data["step"] == 1)  # type: ignore[index]
    assert "full validation" not in first.message and "full_valid_loss" not in first.data  # type: ignore[operator]

    [ckpt] = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert ckpt.step_number == 2
    assert ckpt.metrics.full_valid_loss == data["full_valid_loss"]
    assert ckpt.metrics.full_valid_mean_token_accuracy == data["full_valid_mean_token_accuracy"]
    assert ckpt.metrics.valid_loss is not None and ckpt.metrics.train_loss is not None

    assert _dashboard_csv(http, job.id).splitlines() == rows  # decoded for people


def test_results_csv_plain_when_the_operator_turns_base64_off(
    client: openai.OpenAI, container: Any, http: Any, tmp_path: Path
) -> None:
    container.settings.results_csv_base64 = False  # AFINAR_RESULTS_CSV_BASE64=false
    job = _job(client, tmp_path, validation=False)
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    rows = client.files.content(job.result_files[0]).text.splitlines()
    assert rows[0] == HEADER and len(rows) == 3
    assert all(r.endswith(",,") for r in rows[1:])  # no validation file: empty validation columns
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any(m.startswith("Step 2/2: training loss=") for m in messages)
    assert not any("validation loss" in m for m in messages)
    [ckpt] = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert ckpt.metrics.full_valid_loss is None
    assert _dashboard_csv(http, job.id).splitlines() == rows
