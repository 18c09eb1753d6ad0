"""The fine-tuning job object echoes its ``eval_gate`` (additive), through the official SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai

from tests.support.data import chat_file
from tests.support.evals import ALWAYS, SOURCE, make_eval
from tests.support.tiny_model import TINY


def test_job_echoes_its_eval_gate_on_create_retrieve_and_list(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    from afinar.store import evals as repo

    train_id = client.files.create(
        file=chat_file(tmp_path / "t.jsonl", 12).open("rb"), purpose="fine-tune"
    ).id
    ev = make_eval(client, [ALWAYS], item_schema={"type": "object", "required": ["question"]})
    gate = {"eval_id": ev.id, "data_source": SOURCE, "min_pass_rate": 0.5, "testing_criteria": "answered"}
    job = client.fine_tuning.jobs.create(model=TINY, training_file=train_id, extra_body={"eval_gate": gate})
    plain = client.fine_tuning.jobs.create(model=TINY, training_file=train_id)

    echo = job.model_extra["eval_gate"] if job.model_extra else None
    assert echo is not None
    assert {k: echo[k] for k in ("eval_id", "min_pass_rate", "beat_base_by", "testing_criteria")} == {
        "eval_id": ev.id,
        "min_pass_rate": 0.5,
        "beat_base_by": None,
        "testing_criteria": "answered",
    }
    assert echo["data_source"]["type"] == "completions" and echo["data_source"]["source"] == SOURCE["source"]
    assert "model" not in echo["data_source"]  # the platform fills in base and tuned
    assert (echo["status"], echo["verdict"]) == ("pending", None)
    assert getattr(plain, "eval_gate") is None  # noqa: B009 - an additive field

    assert client.fine_tuning.jobs.retrieve(job.id).model_extra == job.model_extra
    listed = {j.id: getattr(j, "eval_gate") for j in client.fine_tuning.jobs.list()}  # noqa: B009
    assert listed == {job.id: echo, plain.id: None}

    # Once the worker decides the gate, the job carries the verdict too.
    with container.db.session() as s:
        row = repo.get_gate(s, job.id)
        assert row is not None
        row.status, row.verdict = "failed", {"passed": False, "reasons": ["pass rate 0.000 < minimum 0.500"]}
    decided = getattr(client.fine_tuning.jobs.retrieve(job.id), "eval_gate")  # noqa: B009
    assert decided["status"] == "failed" and decided["verdict"]["passed"] is False
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert getattr(cancelled, "eval_gate")["eval_id"] == ev.id  # noqa: B009
