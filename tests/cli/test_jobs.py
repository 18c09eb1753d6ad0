"""``afinar jobs``: create (uploading a local file), follow to success and to failure, control, list, show."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import Cli, cli_env
from tests.support.data import chat_file
from tests.support.server import Server
from tests.support.tiny_model import TINY
from tests.support.wait import wait_for


@pytest.fixture(scope="module")
def finished(server: Server, tiny_catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One job run to the end by ``jobs create --follow`` from a local file: its output and id."""
    tmp = tmp_path_factory.mktemp("jobs")
    cli = Cli(cli_env(tiny_catalog, tmp / "cli-data", server))
    path = str(chat_file(tmp / "train.jsonl", 10))
    options = ["--epochs", "1", "--batch-size", "2", "--suffix", "cli", "--seed", "7"]
    options += ["--follow", "--interval", "0.2"]
    result = cli("jobs", "create", "--model", TINY, "--training-file", path, *options)
    match = re.search(r"Created (ftjob-\w+)", result.output)
    return {"result": result, "job_id": match.group(1) if match else None}


def test_create_follow_renders_progress_and_prints_the_model(finished: dict[str, Any]) -> None:
    result = finished["result"]
    assert result.exit_code == 0, result.output
    assert re.search(r"Uploaded .*train\.jsonl as file-\w+", result.stderr)
    assert "Fine-tuning job started" in result.stderr  # events print above the bar
    assert re.search(r"succeeded .* 5/5 steps\s+loss \d+\.\d{4}", result.stderr), result.stderr  # the bar
    model = re.search(r"Fine-tuned model: (ft:tiny-llama:\S+:cli:\w+)", result.stdout)
    assert model, result.stdout


def test_results_prints_the_decoded_csv(cli: Cli, finished: dict[str, Any], tmp_path: Path) -> None:
    """The server sends the results file base64-encoded, as OpenAI does; ``jobs results`` prints CSV."""
    printed = cli("jobs", "results", finished["job_id"])
    assert printed.exit_code == 0, printed.output
    lines = printed.stdout.splitlines()
    assert lines[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3", "4", "5"]
    out = tmp_path / "results.csv"
    written = cli("jobs", "results", finished["job_id"], "--output", str(out))
    assert written.exit_code == 0 and out.read_text() == printed.stdout


def test_list_and_show(cli: Cli, finished: dict[str, Any]) -> None:
    job_id = finished["job_id"]
    listed = cli.json("jobs", "list", "--limit", "50")
    assert job_id in [j["id"] for j in listed["data"]]
    shown = cli.json("jobs", "show", job_id)
    assert shown["status"] == "succeeded" and shown["seed"] == 7
    assert shown["hyperparameters"]["n_epochs"] == 1 and shown["hyperparameters"]["batch_size"] == 2
    assert shown["fine_tuned_model"].startswith("ft:tiny-llama:")

    human = cli("jobs", "show", job_id)
    assert human.exit_code == 0
    assert "succeeded" in human.stdout and shown["fine_tuned_model"] in human.stdout
    assert "Recent events" in human.stdout and "The job has successfully completed" in human.stdout
    table = cli("jobs", "list")
    assert table.exit_code == 0 and job_id in table.stdout

    again = cli("jobs", "follow", job_id, "--json")  # an ended job: returns at once
    assert again.exit_code == 0
    assert again.stdout.lstrip().startswith("{") and '"status": "succeeded"' in again.stdout

    too_late = cli("jobs", "cancel", job_id)
    assert too_late.exit_code == 1 and too_late.stderr.startswith("error: ")


def test_fine_tuned_model_chat_and_delete(cli: Cli, finished: dict[str, Any]) -> None:
    model = cli.json("jobs", "show", finished["job_id"])["fine_tuned_model"]
    assert model in {m["id"] for m in cli.json("models", "list")["data"]}
    answer = cli("chat", model, "-m", "Which wheels?", "--max-tokens", "4", "--seed", "1")
    assert answer.exit_code == 0, answer.output
    deleted = cli.json("models", "delete", model)
    assert deleted["id"] == model and deleted["deleted"] is True
    assert model not in {m["id"] for m in cli.json("models", "list")["data"]}


def test_follow_a_failing_job_exits_1_with_its_error(cli: Cli, tmp_path: Path) -> None:
    fid = cli.json("files", "upload", str(chat_file(tmp_path / "seven.jsonl", 7)))["id"]
    job = cli.json("jobs", "create", "-m", TINY, "-t", fid)
    assert job["status"] == "validating_files" and job["training_file"] == fid
    result = cli("jobs", "follow", job["id"], "--interval", "0.2")
    assert result.exit_code == 1
    assert "error: invalid_n_examples: Training file has 7 example(s)" in result.stderr
    assert "Fine-tuned model" not in result.stdout
    assert cli.json("jobs", "show", job["id"])["status"] == "failed"


def _status(cli: Cli, job_id: str) -> str:
    return str(cli.json("jobs", "show", job_id)["status"])


def test_pause_resume_cancel(cli: Cli, tmp_path: Path) -> None:
    job = cli.json(
        "jobs", "create", "-m", TINY, "-t", str(chat_file(tmp_path / "t.jsonl", 12)), "--epochs", "4"
    )
    wait_for(
        lambda: _status(cli, job["id"]) in ("queued", "running"),
        timeout=60,
        interval=0.2,
        message="the job never left validating_files",
    )
    paused = cli("jobs", "pause", job["id"])
    assert paused.exit_code == 0 and paused.stdout.strip() == f"{job['id']}: paused"
    assert cli.json("jobs", "resume", job["id"])["status"] == "queued"
    assert cli.json("jobs", "cancel", job["id"])["status"] == "cancelled"
    followed = cli("jobs", "follow", job["id"])
    assert followed.exit_code == 1 and "error: cancelled:" in followed.stderr
    assert cli("jobs", "resume", job["id"]).exit_code == 1


def test_create_usage_errors(cli: Cli, tmp_path: Path) -> None:
    path = str(chat_file(tmp_path / "t.jsonl", 12))
    assert cli("jobs", "create", "-m", TINY, "-t", path, "--epochs", "many").exit_code == 2
    assert cli("jobs", "create", "-m", TINY, "-t", str(tmp_path / "nope.jsonl")).exit_code == 2
    assert cli("jobs", "create", "-t", path).exit_code == 2  # --model is required
    unknown = cli("jobs", "create", "-m", "no-such-base", "-t", path)
    assert unknown.exit_code == 1 and "\nerror: model_not_available: " in unknown.stderr
    missing = cli("jobs", "show", "ftjob-doesnotexist")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: ")
