"""Evals and eval runs through the official SDK: create, list, retrieve, update, delete, cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.evals import EXACT_MATCH, ScriptedEngine, jsonl_source, make_eval
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker

EQ = EXACT_MATCH


def test_eval_crud_and_lists(client: openai.OpenAI, container: Any) -> None:
    first = make_eval(client, [EQ], metadata={"team": "shop"})
    assert first.id.startswith("eval_") and first.object == "eval" and first.name == "shop eval"
    assert first.data_source_config.type == "custom"
    assert first.data_source_config.schema_["properties"]["item"]["required"] == ["question"]  # type: ignore[union-attr]
    assert first.testing_criteria[0].name == "exact" and first.metadata == {"team": "shop"}
    second = make_eval(client, [EQ], name="second")
    assert [e.id for e in client.evals.list()] == [first.id, second.id]  # ascending by default
    page = client.evals.list(order="desc", limit=1)
    assert [e.id for e in page.data] == [second.id] and page.has_more
    assert [e.id for e in client.evals.list(after=first.id)] == [second.id]
    assert client.evals.retrieve(first.id).name == "shop eval"
    updated = client.evals.update(first.id, name="renamed", metadata={"v": "2"})
    assert updated.name == "renamed" and updated.metadata == {"v": "2"}
    from afinar.store.tables import Eval

    with container.db.session() as s:  # both were made in the same second: age the second one
        s.get(Eval, 2).updated_at -= 10
    assert [e.id for e in client.evals.list(order_by="updated_at", order="desc")] == [first.id, second.id]
    gone = client.evals.delete(first.id)
    assert gone.deleted and gone.eval_id == first.id
    with pytest.raises(openai.NotFoundError):
        client.evals.retrieve(first.id)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        (
            {"testing_criteria": [{"type": "python", "name": "p", "source": "def grade(s, i): return 1"}]},
            "testing_criteria[0].type",
        ),
        ({"testing_criteria": [{**EQ, "operation": "regex"}]}, "testing_criteria[0].operation"),
        (
            {
                "testing_criteria": [
                    {
                        "type": "text_similarity",
                        "name": "t",
                        "input": "a",
                        "reference": "b",
                        "evaluation_metric": "bleu",
                    }
                ]
            },
            "testing_criteria[0].pass_threshold",
        ),
        ({"testing_criteria": [EQ, EQ]}, "testing_criteria"),
        ({"testing_criteria": [{**EQ, "input": "{{foo.bar}}"}]}, "testing_criteria[0].input"),
        (
            {
                "testing_criteria": [
                    {
                        "type": "label_model",
                        "name": "j",
                        "model": "no-such-model",
                        "labels": ["a"],
                        "passing_labels": ["a"],
                        "input": [{"role": "user", "content": "x"}],
                    }
                ]
            },
            "testing_criteria[0].model",
        ),
        ({"data_source_config": {"type": "logs"}}, "data_source_config.type"),
    ],
)
def test_create_eval_refusals(client: openai.OpenAI, kwargs: dict[str, Any], param: str) -> None:
    args: dict[str, Any] = {
        "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
        "testing_criteria": [EQ],
        **kwargs,
    }
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as err:
        client.evals.create(**args)
    assert err.value.param == param  # type: ignore[union-attr]


def test_jsonl_run_lifecycle(client: openai.OpenAI, container: Any) -> None:
    ev = make_eval(client, [EQ, {**EQ, "name": "polite", "operation": "ilike", "reference": "THANKS"}])
    rows = [
        ({"question": "q0", "answer": "yes thanks"}, "yes thanks"),
        ({"question": "q1", "answer": "no"}, "no, thanks"),
        ({"question": "q2", "answer": "maybe"}, "maybe"),
    ]
    run = client.evals.runs.create(ev.id, data_source=jsonl_source(rows), name="given", metadata={"k": "v"})  # type: ignore[arg-type]
    assert run.id.startswith("evalrun_") and run.object == "eval.run" and run.status == "queued"
    assert run.name == "given" and run.metadata == {"k": "v"} and run.result_counts.total == 3
    run_worker(container)
    run = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    assert run.status == "completed", run.error
    assert run.result_counts.model_dump() == {"total": 3, "passed": 1, "failed": 2, "errored": 0}
    per = {r.testing_criteria: (r.passed, r.failed) for r in run.per_testing_criteria_results}
    assert per == {"exact": (2, 1), "polite": (2, 1)}
    assert getattr(run, "progress") == {"completed": 3, "total": 3}  # noqa: B009 - an additive field
    items = list(client.evals.runs.output_items.list(run.id, eval_id=ev.id))
    assert [i.datasource_item_id for i in items] == [0, 1, 2]
    assert [i.status for i in items] == ["pass", "fail", "fail"]
    assert items[0].object == "eval.run.output_item" and items[0].sample.output[0].content == "yes thanks"
    assert {r.name: r.passed for r in items[1].results} == {"exact": False, "polite": True}
    failed = client.evals.runs.output_items.list(run.id, eval_id=ev.id, status="fail")
    assert [i.datasource_item_id for i in failed] == [1, 2]
    one = client.evals.runs.output_items.retrieve(items[2].id, eval_id=ev.id, run_id=run.id)
    assert one.datasource_item == {"question": "q2", "answer": "maybe"}
    assert [r.id for r in client.evals.runs.list(ev.id, status="completed")] == [run.id]
    with pytest.raises(openai.BadRequestError):
        client.evals.runs.cancel(run.id, eval_id=ev.id)
    deleted = client.evals.runs.delete(run.id, eval_id=ev.id)
    assert deleted.deleted and deleted.run_id == run.id
    assert list(client.evals.runs.list(ev.id)) == []


def test_run_refusals(client: openai.OpenAI) -> None:
    ev = make_eval(client, [EQ])
    bad: list[tuple[dict[str, Any], str]] = [
        (
            {"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"question": 1}}]}},
            "data_source.source",
        ),
        (
            {"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"question": "q"}}]}},
            "data_source.source",
        ),  # the criteria read sample.output_text, which the line lacks
        (
            {
                "type": "completions",
                "model": "nope",
                "source": {"type": "file_content", "content": [{"item": {"question": "q"}}]},
                "input_messages": {
                    "type": "template",
                    "template": [{"role": "user", "content": "{{item.question}}"}],
                },
            },
            "data_source.model",
        ),
        ({"type": "responses", "source": {"type": "file_id", "id": "file-x"}}, "data_source.type"),
        ({"type": "jsonl", "source": {"type": "file_id", "id": "file-nope"}}, "data_source.source.id"),
    ]
    for source, param in bad:
        with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as err:
            client.evals.runs.create(ev.id, data_source=source)  # type: ignore[arg-type]
        assert err.value.param == param, source  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.create("eval_nope", data_source=jsonl_source([({"question": "q"}, "a")]))  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.retrieve("evalrun_nope", eval_id=ev.id)


def test_completions_run_generates_with_the_tiny_model_and_is_metered(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    ev = make_eval(client, [{**EQ, "operation": "ne", "reference": "zzz-never"}])
    path = tmp_path / "items.jsonl"
    path.write_text(
        "".join(json.dumps({"item": {"question": f"Which wheels, {i}?"}}) + "\n" for i in range(3))
    )
    fid = client.files.create(file=path.open("rb"), purpose="evals").id
    run = client.evals.runs.create(
        ev.id,
        data_source={  # type: ignore[arg-type]
            "type": "completions",
            "model": TINY,
            "source": {"type": "file_id", "id": fid},
            "input_messages": {
                "type": "template",
                "template": [
                    {"role": "system", "content": "You help a skateboard shop."},
                    {"role": "user", "content": "{{item.question}}"},
                ],
            },
            "sampling_params": {"temperature": 0, "max_completion_tokens": 4, "seed": 1},
        },
    )
    assert run.model == TINY
    run_worker(container)
    run = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    assert run.status == "completed", run.error
    assert run.result_counts.passed == 3
    usage = run.per_model_usage[0]
    assert usage.run_model_name == TINY and usage.invocation_count == 3 and 0 < usage.completion_tokens <= 12
    item = next(iter(client.evals.runs.output_items.list(run.id, eval_id=ev.id)))
    assert item.sample.input[1].content == "Which wheels, 0?" and item.sample.usage.prompt_tokens > 5
    assert item.sample.max_completion_tokens == 4 and item.sample.temperature == 0
    from sqlalchemy import select

    from afinar.store.tables import UsageRecord

    with container.db.session() as s:
        keys = sorted(r.key for r in s.scalars(select(UsageRecord).where(UsageRecord.kind == "inference")))
    assert keys == [f"inference:{run.id}-{i}" for i in range(3)]


def test_cancel_queued_and_running_runs(client: openai.OpenAI, container: Any) -> None:
    ev = make_eval(client, [{**EQ, "operation": "ne"}])
    source = {
        "type": "completions",
        "model": TINY,
        "source": {"type": "file_content", "content": [{"item": {"question": f"q{i}"}} for i in range(20)]},
        "input_messages": {
            "type": "template",
            "template": [{"role": "user", "content": "{{item.question}}"}],
        },
    }
    queued = client.evals.runs.create(ev.id, data_source=source)  # type: ignore[arg-type]
    assert client.evals.runs.cancel(queued.id, eval_id=ev.id).status == "canceled"
    running = client.evals.runs.create(ev.id, data_source=source)  # type: ignore[arg-type]
    calls = []

    def answer(_request: Any) -> str:
        calls.append(1)
        if len(calls) == 9:  # first item of the second chunk: cancel from "the API" while it runs
            client.evals.runs.cancel(running.id, eval_id=ev.id)
        return "ok"

    container._engine = ScriptedEngine(answer)
    run_worker(container)
    after = client.evals.runs.retrieve(running.id, eval_id=ev.id)
    assert after.status == "canceled" and getattr(after, "progress")["completed"] == 8  # noqa: B009
    assert len(calls) == 16  # the chunk in flight finishes, its results are not written, nothing more runs
    assert client.evals.runs.retrieve(queued.id, eval_id=ev.id).status == "canceled"
    assert len(list(client.evals.runs.output_items.list(running.id, eval_id=ev.id))) == 8


def test_other_organisations_see_nothing(client: openai.OpenAI, container: Any, http: Any) -> None:
    from afinar.services.orgs import create_org

    ev = make_eval(client, [EQ])
    run = client.evals.runs.create(ev.id, data_source=jsonl_source([({"question": "q", "answer": "a"}, "a")]))  # type: ignore[arg-type]
    run_worker(container)
    item = next(iter(client.evals.runs.output_items.list(run.id, eval_id=ev.id)))
    _, key = create_org(container.db, "rival")
    rival = openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)
    assert list(rival.evals.list()) == []
    attempts = [
        lambda: rival.evals.retrieve(ev.id),
        lambda: rival.evals.update(ev.id, name="mine now"),
        lambda: rival.evals.delete(ev.id),
        lambda: rival.evals.runs.create(ev.id, data_source=jsonl_source([({"question": "q"}, "a")])),  # type: ignore[arg-type]
        lambda: rival.evals.runs.list(ev.id),
        lambda: rival.evals.runs.retrieve(run.id, eval_id=ev.id),
        lambda: rival.evals.runs.cancel(run.id, eval_id=ev.id),
        lambda: rival.evals.runs.delete(run.id, eval_id=ev.id),
        lambda: rival.evals.runs.output_items.list(run.id, eval_id=ev.id),
        lambda: rival.evals.runs.output_items.retrieve(item.id, eval_id=ev.id, run_id=run.id),
        lambda: rival.get(
            f"/afinar/evals/{ev.id}/compare",
            cast_to=dict,  # type: ignore[type-var]
            options={"params": {"base_run_id": run.id, "candidate_run_id": run.id}},
        ),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert client.evals.retrieve(ev.id).name == "shop eval"
    assert client.evals.runs.retrieve(run.id, eval_id=ev.id).status == "completed"


def test_abandoned_run_is_recovered_without_redoing_items(
    client: openai.OpenAI, container: Any, monkeypatch: Any
) -> None:
    from afinar.errors import LeaseLost
    from afinar.queue.leases import claim_run
    from afinar.worker import eval_runs
    from afinar.worker.loop import Worker

    ev = make_eval(client, [EQ])
    rows = [({"question": f"q{i}", "answer": "a"}, "a") for i in range(3)]
    run = client.evals.runs.create(ev.id, data_source=jsonl_source(rows))  # type: ignore[arg-type]
    monkeypatch.setattr(eval_runs, "CHUNK", 1)
    lease = claim_run(container.db, "a-worker-that-dies", lease_seconds=-1)  # its lease is already stale
    assert lease is not None and lease.run_id == run.id
    stops = iter([False, True])
    with pytest.raises(LeaseLost):  # the worker "dies" after its first item
        Worker(container).eval_runner.executor(lease, should_stop=lambda: next(stops)).run()
    half = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    assert half.status == "in_progress" and getattr(half, "progress")["completed"] == 1  # noqa: B009
    run_worker(container)  # another worker claims the abandoned run and finishes it
    done = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    assert done.status == "completed" and done.result_counts.passed == 3
    items = list(client.evals.runs.output_items.list(run.id, eval_id=ev.id))
    assert sorted(i.datasource_item_id for i in items) == [0, 1, 2]
