"""Every testing criterion through the official SDK, and the SQL criterion against hostile queries."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.evals import similarity
from tests.support.evals import ScriptedEngine, jsonl_source, make_eval
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker


def _run(client: openai.OpenAI, container: Any, ev: Any, rows: list[tuple[dict[str, Any], str]]) -> list[Any]:
    run = client.evals.runs.create(ev.id, data_source=jsonl_source(rows))  # type: ignore[arg-type]
    run_worker(container)
    done = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    assert done.status == "completed", done.error
    return list(client.evals.runs.output_items.list(run.id, eval_id=ev.id, limit=100))


def _results(items: list[Any], name: str) -> list[Any]:
    return [next(r for r in i.results if r.name == name) for i in items]


def test_string_check_operations(client: openai.OpenAI, container: Any) -> None:
    criteria = [
        {
            "type": "string_check",
            "name": op,
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "operation": op,
        }
        for op in ("eq", "ne", "like", "ilike")
    ]
    ev = make_eval(client, criteria)
    items = _run(
        client,
        container,
        ev,
        [
            ({"question": "q", "answer": "Deck"}, "Deck"),
            ({"question": "q", "answer": "Deck"}, "the Deck here"),
            ({"question": "q", "answer": "Deck"}, "a deck"),
            ({"question": "q", "answer": "Deck"}, "wheels"),
        ],
    )
    table = [[r.passed for r in i.results] for i in items]
    assert table == [
        [True, False, True, True],
        [False, True, True, True],
        [False, True, False, True],
        [False, True, False, False],
    ]
    assert all(r.score in (0.0, 1.0) and r.type == "string_check" for i in items for r in i.results)


def test_text_similarity_metrics(client: openai.OpenAI, container: Any) -> None:
    metrics = ("fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_l", "cosine")
    criteria = [
        {
            "type": "text_similarity",
            "name": m,
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "evaluation_metric": m,
            "pass_threshold": 0.6,
        }
        for m in metrics
    ]
    ev = make_eval(client, criteria)
    ref = "clean your bearings every month if you ride in the rain"
    items = _run(
        client,
        container,
        ev,
        [
            ({"question": "q", "answer": ref}, ref),
            ({"question": "q", "answer": ref}, "clean the bearings every month when you ride in rain"),
            ({"question": "q", "answer": ref}, "pizza is a popular dish in naples"),
        ],
    )
    same, close, far = ({r.name: r.score for r in i.results} for i in items)
    assert all(same[m] == pytest.approx(1.0, abs=1e-3) for m in metrics), same
    assert all(close[m] > far[m] for m in metrics), (close, far)
    assert close["cosine"] > 0.8 and far["cosine"] < 0.3  # MiniLM embeddings, offline
    assert items[0].status == "pass" and items[2].status == "fail"


def test_similarity_reference_values() -> None:
    assert similarity.fuzzy_match("this is a test", "this is a test!") == pytest.approx(0.9655, abs=1e-4)
    assert similarity.rouge_n("the cat sat", "the cat sat down", 1) == pytest.approx(6 / 7)
    assert similarity.rouge_l("a b c d", "a c d e") == pytest.approx(0.75)
    assert similarity.bleu("completely different words", "the reference text") == 0.0
    assert 0 < similarity.meteor("the cat sat on the mat", "on the mat sat the cat") < 1


def test_label_and_score_model_judges(client: openai.OpenAI, container: Any) -> None:
    def judge(request: Any) -> str:
        text = request.messages[-1]["content"]
        if "labels" in request.messages[0]["content"]:
            return "Correct." if "Deck" in text else "incorrect"
        return "0.9" if "Deck" in text else "score: 2 out of 10"

    engine = ScriptedEngine(judge)
    container._engine = engine
    judge_input = [{"role": "user", "content": "Question: {{item.question}} Answer: {{sample.output_text}}"}]
    ev = make_eval(
        client,
        [
            {
                "type": "label_model",
                "name": "label",
                "model": TINY,
                "input": judge_input,
                "labels": ["correct", "incorrect"],
                "passing_labels": ["correct"],
            },
            {
                "type": "score_model",
                "name": "score",
                "model": TINY,
                "input": judge_input,
                "range": [0, 1],
                "pass_threshold": 0.5,
            },
        ],
    )
    items = _run(
        client, container, ev, [({"question": "Best deck?"}, "Deck"), ({"question": "Best deck?"}, "no")]
    )
    labels, scores = _results(items, "label"), _results(items, "score")
    assert [r.passed for r in labels] == [True, False]
    assert labels[0].model_extra["label"] == "correct" and labels[1].model_extra["label"] == "incorrect"
    assert [r.score for r in scores] == [0.9, 1.0]  # "2 out of 10" is clamped into the range, then passes
    assert labels[0].sample["output"][0]["content"] == "Correct."
    assert (
        engine.requests[0].params.temperature == 0
        and "Answer: Deck" in engine.requests[0].messages[-1]["content"]
    )
    assert engine.requests[0].messages[0]["role"] == "system"


def test_judge_without_a_label_errors_the_item(client: openai.OpenAI, container: Any) -> None:
    container._engine = ScriptedEngine(lambda _r: "I cannot say")
    ev = make_eval(
        client,
        [
            {
                "type": "label_model",
                "name": "label",
                "model": TINY,
                "labels": ["good", "bad"],
                "passing_labels": ["good"],
                "input": [{"role": "user", "content": "{{item.question}}"}],
            }
        ],
    )
    run = client.evals.runs.create(ev.id, data_source=jsonl_source([({"question": "q"}, "x")]))  # type: ignore[arg-type]
    run_worker(container)
    done = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    assert done.result_counts.errored == 1 and done.result_counts.passed == 0
    item = next(iter(client.evals.runs.output_items.list(run.id, eval_id=ev.id)))
    assert item.status == "error" and "answered no label" in item.results[0].model_extra["error"]
    assert item.sample.error.code == "grader_error" and "answered no label" in item.sample.error.message


def test_grader_errors_are_errored_and_left_out_of_the_averages(
    client: openai.OpenAI, container: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A judge that answers no score, or a grader that raises, makes the item errored: counted under
    ``result_counts.errored``, never as a failure or a score of 0 in the run's rates and means."""
    answers = {"q1": "0.9", "q2": "0.1", "q3": "I would rather not say", "q4": "0.7"}
    container._engine = ScriptedEngine(
        lambda r: next(a for q, a in answers.items() if f"Question: {q} " in r.messages[-1]["content"])
    )
    real_score = similarity.score

    def flaky_score(metric: str, a: str, b: str) -> float:
        if a == "boom":
            raise RuntimeError("the metric blew up")
        return real_score(metric, a, b)

    monkeypatch.setattr(similarity, "score", flaky_score)
    judge_input = [{"role": "user", "content": "Question: {{item.question}} Answer: {{sample.output_text}}"}]
    criteria = [
        {
            "type": "score_model",
            "name": "judge",
            "model": TINY,
            "input": judge_input,
            "range": [0, 1],
            "pass_threshold": 0.5,
        },
        {
            "type": "text_similarity",
            "name": "similar",
            "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}",
            "evaluation_metric": "fuzzy_match",
            "pass_threshold": 0.5,
        },
    ]
    ev = make_eval(client, criteria)
    rows = [
        ({"question": "q1", "answer": "Deck"}, "Deck"),  # pass, pass: passed
        ({"question": "q2", "answer": "Deck"}, "wheels"),  # fail, fail: failed
        ({"question": "q3", "answer": "Deck"}, "Deck"),  # judge answers no score: errored
        ({"question": "q4", "answer": "Deck"}, "boom"),  # the similarity grader raises: errored
    ]
    run = client.evals.runs.create(ev.id, data_source=jsonl_source(rows))  # type: ignore[arg-type]
    run_worker(container)
    done = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    assert done.status == "completed", done.error
    counts = done.result_counts
    assert counts.model_dump() == {"total": 4, "passed": 1, "failed": 1, "errored": 2}
    assert counts.passed + counts.failed + counts.errored == counts.total
    per = {r.testing_criteria: r for r in done.per_testing_criteria_results}
    assert (per["judge"].passed, per["judge"].failed, per["judge"].model_extra["errored"]) == (2, 1, 1)
    assert (per["similar"].passed, per["similar"].failed, per["similar"].model_extra["errored"]) == (2, 1, 1)
    # Means over the graded results only: (0.9 + 0.1 + 0.7) / 3, not / 4 with a 0 for the errored one.
    assert per["judge"].model_extra["mean_score"] == pytest.approx((0.9 + 0.1 + 0.7) / 3, abs=1e-6)

    items = {i.datasource_item_id: i for i in client.evals.runs.output_items.list(run.id, eval_id=ev.id)}
    assert [items[k].status for k in range(4)] == ["pass", "fail", "error", "error"]
    no_score = items[2]
    judged = next(r for r in no_score.results if r.name == "judge")
    assert judged.passed is False and judged.model_extra["errored"] is True
    assert "answered no score" in judged.model_extra["error"]
    assert next(r for r in no_score.results if r.name == "similar").passed  # the other grader still ran
    assert no_score.sample.error.code == "grader_error"
    assert "judge: " in no_score.sample.error.message and "answered no score" in no_score.sample.error.message
    raised = next(r for r in items[3].results if r.name == "similar")
    assert raised.model_extra["errored"] and "the metric blew up" in raised.model_extra["error"]
    assert items[3].sample.error.code == "grader_error" and items[0].sample.error is None
    failed = client.evals.runs.output_items.list(run.id, eval_id=ev.id, status="fail")
    assert [i.datasource_item_id for i in failed] == [1]  # an errored item is not a failure

    report = client.get(
        f"/afinar/evals/{ev.id}/compare",
        cast_to=dict,  # type: ignore[type-var]
        options={"params": {"base_run_id": run.id, "candidate_run_id": run.id}},
    )
    assert report["candidate_pass_rate"] == 0.5  # 1 passed of 2 graded; the 2 errored are left out
    rates = {r["testing_criteria"]: r["candidate_pass_rate"] for r in report["per_testing_criteria"]}
    assert rates == {"judge": pytest.approx(2 / 3), "similar": pytest.approx(2 / 3)}


CORRECT = "SELECT name FROM products WHERE category = 'deck'"
CTE = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n"


def test_sql_execution_accuracy_and_hostile_queries(
    client: openai.OpenAI, container: Any, db_file_id: str, shop_db: Path
) -> None:
    before = hashlib.sha256(shop_db.read_bytes()).hexdigest()
    org = _org(container)
    stored = container.blobs.path(container.files.get(org, db_file_id).blob_key)  # the ciphertext

    def stored_digest() -> str:
        return hashlib.sha256(b"".join(container.files.iter_content(org, db_file_id))).hexdigest()

    stored_before = stored_digest()
    assert stored_before == before
    cipher_before = hashlib.sha256(Path(stored).read_bytes()).hexdigest()
    ev = make_eval(
        client,
        [
            {
                "type": "sql_execution",
                "name": "execution accuracy",
                "reference": "{{item.sql}}",
                "database_file_id": db_file_id,
                "timeout_ms": 300,
            }
        ],
        item_schema={"type": "object", "required": ["question", "sql"]},
    )
    cases = [
        (
            "correct, reordered and fenced",
            "```sql\nSELECT name FROM products WHERE price > 60 OR price < 60 "
            "AND category = 'deck' ORDER BY id DESC;\n```\nThis lists decks.",
        ),
        ("wrong result", "SELECT name FROM products"),
        ("invalid", "SELECT name FROM products WHERE AND"),
        ("drop", "DROP TABLE products"),
        ("attach", "ATTACH DATABASE '/tmp/afinar-evil.db' AS evil"),
        ("cte after a comment", "/* go */ " + CTE),
        ("write in a CTE", "WITH x AS (SELECT 1) DELETE FROM products"),
        ("pragma", "PRAGMA writable_schema = 1"),
        ("extension", "SELECT load_extension('/tmp/evil.so')"),
        ("stacked", "SELECT name FROM products WHERE category = 'deck'; DROP TABLE products"),
    ]
    items = _run(client, container, ev, [({"question": q, "sql": CORRECT}, out) for q, out in cases])
    results = {i.datasource_item["question"]: i.results[0] for i in items}
    assert [q for q, r in results.items() if r.passed] == ["correct, reordered and fenced", "stacked"]
    extra = {q: r.model_extra for q, r in results.items()}
    assert extra["wrong result"]["predicted_rows"] == 4 and extra["wrong result"]["reference_rows"] == 2
    assert "syntax error" in extra["invalid"]["error"]
    for q in ("drop", "attach", "pragma"):
        assert extra[q]["error"].startswith("refused"), extra[q]
    assert "interrupted" in extra["cte after a comment"]["error"]
    assert extra["cte after a comment"]["elapsed_ms"] < 3000
    assert (
        "not authorized" in extra["write in a CTE"]["error"]
        and "not authorized" in extra["extension"]["error"]
    )
    assert extra["stacked"]["predicted_sql"] == CORRECT
    assert stored_digest() == stored_before
    assert hashlib.sha256(Path(stored).read_bytes()).hexdigest() == cipher_before
    assert hashlib.sha256(shop_db.read_bytes()).hexdigest() == before
    assert not Path("/tmp/afinar-evil.db").exists()


def _org(container: Any) -> str:
    from sqlalchemy import select

    from afinar.store.tables import Organization

    with container.db.session() as s:
        return str(s.scalar(select(Organization.id)))


def test_sql_reference_failure_is_an_error_and_bad_database_is_refused(
    client: openai.OpenAI, container: Any, db_file_id: str, tmp_path: Path
) -> None:
    ev = make_eval(
        client,
        [
            {
                "type": "sql_execution",
                "name": "ex",
                "reference": "{{item.sql}}",
                "database_file_id": db_file_id,
            }
        ],
        item_schema={"type": "object"},
    )
    items = _run(client, container, ev, [({"sql": "SELECT nope FROM nowhere"}, CORRECT)])
    assert items[0].status == "error" and "reference SQL failed" in items[0].results[0].model_extra["error"]
    text_id = client.files.create(file=("notes.txt", b"not a database"), purpose="evals").id
    with pytest.raises(openai.BadRequestError) as err:
        make_eval(
            client, [{"type": "sql_execution", "name": "ex", "reference": "x", "database_file_id": text_id}]
        )
    assert err.value.param == "testing_criteria[0].database_file_id"
