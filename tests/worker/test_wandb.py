"""``integrations: [{"type": "wandb", ...}]``: a tiny-model job's training metrics land in a
Weights & Biases run (offline mode, read back from the run's log), with OpenAI's default tags'
counterparts; a worker without W&B credentials says so in an event and the job still succeeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.data import chat_file
from tests.support.tiny_model import TINY
from tests.support.wandb_offline import offline_runs
from tests.support.worker import run_worker

HYPER: Any = {"n_epochs": 1, "batch_size": 5}  # 10 examples: 2 steps


@pytest.fixture
def settings(settings: Any) -> Any:
    return settings.model_copy(update={"safety_eval": False})  # the gate has nothing to do with W&B


@pytest.fixture
def no_wandb_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No key, no netrc, no user settings: only what the test sets reaches ``wandb``."""
    for var in (
        "WANDB_API_KEY",
        "WANDB_MODE",
        "WANDB_DIR",
        "WANDB_BASE_URL",
        "WANDB_ENTITY",
        "WANDB_PROJECT",
    ):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / "wandb-config"))
    return home


def _job(client: openai.OpenAI, tmp_path: Path, wandb: dict[str, Any]) -> Any:
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    return client.fine_tuning.jobs.create(
        model=TINY,
        training_file=fid,
        hyperparameters=HYPER,
        integrations=[{"type": "wandb", "wandb": wandb}],  # type: ignore[typeddict-item]
    )


def test_offline_run_holds_the_jobs_metrics(
    client: openai.OpenAI,
    container: Any,
    tmp_path: Path,
    no_wandb_login: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wandb_dir = tmp_path / "wandb-runs"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    job = _job(client, tmp_path, {"project": "skates", "entity": "acme", "tags": ["nightly"]})
    assert job.integrations is not None and job.integrations[0].wandb.project == "skates"
    run_worker(container)

    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded"
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    assert not [e.message for e in events if "wandb" in e.message]
    steps: list[Any] = sorted((e.data for e in events if e.type == "metrics"), key=lambda d: d["step"])
    assert [d["step"] for d in steps] == [1, 2]

    (run,) = offline_runs(wandb_dir)
    assert (run.project, run.entity, run.name, run.run_id) == ("skates", "acme", job.id, job.id)
    assert run.tags == ["afinar/finetune", f"afinar/{TINY}", f"afinar/{job.id}", "nightly"]
    assert run.config["model"] == TINY and run.config["job_id"] == job.id
    assert run.config["hyperparameters"]["n_epochs"] == 1 and run.config["hyperparameters"]["batch_size"] == 5
    # Every step the job reported, with the same numbers as its metrics events.
    assert [h["_step"] for h in run.history] == [1, 2]
    for logged, event in zip(run.history, steps, strict=True):
        assert logged["train_loss"] == pytest.approx(event["train_loss"])
        assert logged["tokens_per_second"] == pytest.approx(event["tokens_per_second"])
        assert "step" not in logged and "device_kind" not in logged
    assert run.summary["status"] == "succeeded" and run.summary["fine_tuned_model"] == job.fine_tuned_model
    assert run.summary["trained_tokens"] == job.trained_tokens
    assert run.exit_code == 0


def test_without_credentials_the_job_says_so_and_succeeds(
    client: openai.OpenAI, container: Any, tmp_path: Path, no_wandb_login: Path
) -> None:
    job = _job(client, tmp_path, {"project": "skates"})
    run_worker(container)

    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded" and job.fine_tuned_model
    skipped = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if "wandb" in e.message]
    assert len(skipped) == 1 and skipped[0].level == "warn"
    assert skipped[0].message.startswith("wandb integration skipped: no Weights & Biases credentials")
    assert not (container.settings.data_dir / "wandb").exists()  # no run was even started


def test_credentials_are_a_key_a_netrc_entry_or_offline_mode(tmp_path: Path) -> None:
    from afinar.worker.wandb_sink import credentials_problem

    rc = tmp_path / ".netrc"
    rc.write_text("machine wandb.example.com\n  login user\n  password k\n")
    rc.chmod(0o600)
    bare = {"HOME": str(tmp_path), "NETRC": str(tmp_path / "none")}
    assert credentials_problem(bare) is not None
    assert credentials_problem({**bare, "WANDB_API_KEY": "k"}) is None
    assert credentials_problem({**bare, "WANDB_MODE": "offline"}) is None
    assert "disabled" in str(credentials_problem({**bare, "WANDB_MODE": "disabled", "WANDB_API_KEY": "k"}))
    on_host = {"NETRC": str(rc), "WANDB_BASE_URL": "https://wandb.example.com"}
    assert credentials_problem(on_host) is None
    assert credentials_problem({"NETRC": str(rc)}) is not None  # the entry is for another host
