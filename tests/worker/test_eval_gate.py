"""The eval gate of fine-tuning jobs: one gated job that passes, one that fails; compare; the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.errors import InvalidRequest
from tests.support.data import chat_file
from tests.support.evals import ALWAYS, SOURCE, make_eval
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker


def _gated_job(
    client: openai.OpenAI, container: Any, train_id: str, gate: dict[str, Any], suffix: str
) -> Any:
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=train_id,
        suffix=suffix,
        seed=1,
        hyperparameters={"n_epochs": 1, "batch_size": 4},
        extra_body={"eval_gate": gate},
    )
    from afinar.store import evals as repo

    with container.db.session() as s:
        assert repo.get_gate(s, job.id) is not None  # stored with the job, in its transaction
    return job


def test_gated_jobs_pass_and_fail(
    client: openai.OpenAI, container: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    train_id = client.files.create(
        file=chat_file(tmp_path / "t.jsonl", 12).open("rb"), purpose="fine-tune"
    ).id
    ev = make_eval(client, [ALWAYS], item_schema={"type": "object", "required": ["question"]})
    passing = _gated_job(
        client, container, train_id, {"eval_id": ev.id, "data_source": SOURCE, "min_pass_rate": 0.9}, "pass"
    )
    failing = _gated_job(
        client, container, train_id, {"eval_id": ev.id, "data_source": SOURCE, "beat_base_by": 0.1}, "fail"
    )
    run_worker(container)

    ok = client.fine_tuning.jobs.retrieve(passing.id)
    assert ok.status == "succeeded", ok.error
    assert ok.fine_tuned_model in {m.id for m in client.models.list()}
    gate_events = [e for e in client.fine_tuning.jobs.list_events(ok.id, limit=100) if e.type == "eval_gate"]
    assert len(gate_events) == 1 and gate_events[0].level == "info"
    verdict = gate_events[0].data
    assert verdict["passed"] and verdict["tuned"]["pass_rate"] == 1.0 and verdict["base"]["pass_rate"] == 1.0
    assert verdict["tuned"]["model"] == ok.fine_tuned_model and verdict["base"]["model"] == TINY
    assert getattr(ok, "eval_gate")["status"] == "passed"  # noqa: B009 - the job echoes its decided gate
    # The model card (as the API serves it, wherever the adapter is stored) carries the verdict.
    card = client.get(f"/afinar/models/{ok.fine_tuned_model}/card", cast_to=dict)  # type: ignore[type-var]
    assert card["checks"]["eval_gate"]["passed"] is True
    assert card["checks"]["eval_gate"]["tuned"]["pass_rate"] == 1.0
    gate = client.get(f"/afinar/fine_tuning/jobs/{ok.id}/eval_gate", cast_to=dict)  # type: ignore[type-var]
    assert gate["status"] == "passed" and gate["min_pass_rate"] == 0.9 and gate["verdict"]["passed"]

    bad = client.fine_tuning.jobs.retrieve(failing.id)
    assert bad.status == "failed" and bad.error.code == "eval_gate_failed"
    assert "< required +0.100" in (bad.error.message or "") and bad.fine_tuned_model is None
    names = {m.id for m in client.models.list()}
    assert not any(n.startswith(f"ft:{TINY}:default:fail:") for n in names)
    events = list(client.fine_tuning.jobs.list_events(bad.id, limit=100))
    gate_event = next(e for e in events if e.type == "eval_gate")
    assert gate_event.level == "error" and gate_event.data["passed"] is False
    assert gate_event.data["pass_rate_delta"] == 0.0 and gate_event.data["rule"]["beat_base_by"] == 0.1
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model=f"ft:{TINY}:default:fail:x", messages=[{"role": "user", "content": "x"}]
        )

    runs = list(client.evals.runs.list(ev.id, limit=10))
    assert len(runs) == 4 and all(r.status == "completed" for r in runs)
    mine = [r for r in runs if getattr(r, "fine_tuning_job_id") == bad.id]  # noqa: B009 - additive field
    base = next(r for r in mine if getattr(r, "gate_role") == "base")  # noqa: B009
    tuned = next(r for r in mine if getattr(r, "gate_role") == "tuned")  # noqa: B009
    assert base.model == TINY and tuned.model and tuned.model.startswith(f"ft:{TINY}:default:fail:")

    report = client.get(
        f"/afinar/evals/{ev.id}/compare",
        cast_to=dict,  # type: ignore[type-var]
        options={"params": {"base_run_id": base.id, "candidate_run_id": tuned.id}},
    )
    assert report["object"] == "eval.comparison" and report["pass_rate_delta"] == 0.0
    assert report["per_testing_criteria"][0] == {
        "testing_criteria": "answered",
        "base_pass_rate": 1.0,
        "candidate_pass_rate": 1.0,
        "delta": 0.0,
    }
    assert [i["change"] for i in report["items"]] == ["same"] * 3
    assert report["items"][0]["base"]["status"] == "pass" and "output_text" in report["items"][0]["candidate"]

    from typer.testing import CliRunner

    import afinar.cli.evals as cli_evals
    from afinar.cli.main import app

    monkeypatch.setattr(cli_evals, "make_client", lambda: client)
    result = CliRunner().invoke(app, ["evals", "compare", ev.id, base.id, tuned.id], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "answered" in result.stdout and "100.0%" in result.stdout and "+0.0%" in result.stdout
    as_json = CliRunner().invoke(app, ["evals", "compare", ev.id, base.id, tuned.id, "--json"])
    assert json.loads(as_json.stdout)["candidate"]["run_id"] == tuned.id


@pytest.mark.parametrize(
    ("gate", "param"),
    [
        ({"eval_id": "eval_nope", "min_pass_rate": 0.5}, "eval_gate.eval_id"),
        ({"min_pass_rate": 1.5}, "eval_gate.min_pass_rate"),
        ({"beat_base_by": "a lot"}, "eval_gate.beat_base_by"),
        ({}, "eval_gate"),
        ({"min_pass_rate": 0.5, "testing_criteria": "nope"}, "eval_gate.testing_criteria"),
        ({"min_pass_rate": 0.5, "data_source": {**SOURCE, "type": "jsonl"}}, "eval_gate.data_source"),
        (
            {"min_pass_rate": 0.5, "data_source": {**SOURCE, "input_messages": {"type": "x"}}},
            "eval_gate.data_source.input_messages.type",
        ),
    ],
)
def test_gate_spec_refusals(client: openai.OpenAI, container: Any, gate: dict[str, Any], param: str) -> None:
    from sqlalchemy import select

    from afinar.api.schemas.jobs import eval_gate_spec
    from afinar.store.tables import Organization

    ev = make_eval(client, [ALWAYS], item_schema={"type": "object"})
    with container.db.session() as s:
        org_id = s.scalar(select(Organization.id))
    with pytest.raises(InvalidRequest) as err:
        spec = eval_gate_spec({"eval_id": ev.id, "data_source": SOURCE, **gate})  # the edge's shape checks
        container.eval_gates.parse(org_id, spec)  # the checks that need the eval
    assert err.value.param == param


def test_job_creation_refuses_a_bad_gate(client: openai.OpenAI, tmp_path: Path) -> None:
    train_id = client.files.create(
        file=chat_file(tmp_path / "t.jsonl", 12).open("rb"), purpose="fine-tune"
    ).id
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(
            model=TINY,
            training_file=train_id,
            # A well-formed gate naming no eval (the edge checks the shape first, then the eval).
            extra_body={"eval_gate": {"eval_id": "eval_nope", "min_pass_rate": 1, "data_source": SOURCE}},
        )
    assert err.value.param == "eval_gate.eval_id"
    assert list(client.fine_tuning.jobs.list()) == []
