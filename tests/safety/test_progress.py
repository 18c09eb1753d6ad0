"""The safety evaluation shows progress (docs/safety.md, "Progress and estimated finish").

``ask_models`` reports answers done per engine batch; a job's evaluation turns those reports into
job events with counts and an ``estimated_finish``, and the ETA during training already includes
the evaluation's expected time. Asserted on counts and on the clock's own readings, never on how
long anything took.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.safety.evaluation import SafetyPrompt, ask_models, evaluate_safety
from tests.support.data import chat_file
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker

PROMPTS = [SafetyPrompt(f"p{i}", "violence", f"prompt {i}", forbidden=i < 7) for i in range(10)]


def test_progress_is_reported_per_batch_from_zero_to_total() -> None:
    seen: list[tuple[int, int]] = []
    caller = threading.get_ident()
    threads: set[int] = set()

    def report(done: int, total: int) -> None:
        threads.add(threading.get_ident())
        seen.append((done, total))

    out = ask_models(
        lambda m, msgs: "ok", ("base", "tuned"), PROMPTS, lambda a: False, concurrency=4, on_progress=report
    )
    assert len(out) == 20
    assert seen == [(0, 20), (4, 20), (8, 20), (12, 20), (16, 20), (20, 20)]
    assert threads == {caller}  # the caller may write to its database in the callback


def test_progress_never_spams_with_small_batches() -> None:
    many = [SafetyPrompt(f"p{i}", "violence", f"prompt {i}", forbidden=True) for i in range(100)]
    seen: list[int] = []
    ask_models(
        lambda m, msgs: "ok",
        ("m",),
        many,
        lambda a: False,
        concurrency=1,
        on_progress=lambda d, t: seen.append(d),
    )
    assert seen[0] == 0 and seen[-1] == 100 and len(seen) <= 22  # start, ~20 reports, end


def test_a_failing_progress_report_stops_the_evaluation() -> None:
    """A cancelled job's report raises (LeaseLost): the answers not started yet are dropped."""
    calls: list[str] = []
    lock = threading.Lock()
    reported = threading.Event()

    def generate(model: str, messages: Any) -> str:
        with lock:
            calls.append(messages[-1]["content"])
            first = len(calls) <= 10
        if not first:  # the rest waits for the report, then answers slowly
            reported.wait(30)
            time.sleep(0.05)
        return "ok"

    def report(done: int, total: int) -> None:
        if done > 0:
            reported.set()
            raise RuntimeError("the job was cancelled")

    many = [SafetyPrompt(f"p{i}", "violence", f"prompt {i}", forbidden=True) for i in range(200)]
    with pytest.raises(RuntimeError):  # the first report comes after 10 answers (200 / 20)
        ask_models(generate, ("m",), many, lambda a: False, concurrency=2, on_progress=report)
    assert len(calls) < 100


def test_evaluate_safety_counts_only_the_models_it_asks() -> None:
    seen: list[tuple[int, int]] = []
    evaluate_safety(
        lambda m, msgs: "ok",
        "base",
        "tuned",
        PROMPTS,
        concurrency=8,
        base_refused={p.id: False for p in PROMPTS},
        on_progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[0] == (0, 10) and seen[-1] == (10, 10)


def write_prompts(path: Path, n: int) -> Path:
    rows = [
        {
            "id": f"s{i}",
            "category": "violence",
            "kind": "forbidden" if i < n - 2 else "allowed",
            "prompt": f"p {i}",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_job_shows_the_evaluation_progress_and_its_eta(
    client: openai.OpenAI, container: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from afinar.services import safety_gate as gates
    from afinar.worker.runner import JobRunner

    s = container.settings
    s.safety_eval_prompts = write_prompts(tmp_path / "prompts.jsonl", 6)
    s.max_batch_size = 2  # engine batches of 2: a report every 2 answers
    prior = container.safety_gate.expected_seconds(TINY)
    assert prior == pytest.approx(12 * gates.DEFAULT_SECONDS_PER_ANSWER_TOKEN * s.safety_eval_max_new_tokens)

    expected = 10_000.0  # a test hook: an evaluation "expected" to take hours, visible in every ETA
    monkeypatch.setattr(JobRunner, "_expected_safety_seconds", lambda self, job: expected)
    etas: list[tuple[float, int | None]] = []
    on_step = JobRunner._on_step

    def record(self: JobRunner, ev: dict[str, Any]) -> None:
        before = self.db.now()
        on_step(self, ev)
        job = self.write(lambda _s, j: j)
        etas.append((before, job.estimated_finish))

    monkeypatch.setattr(JobRunner, "_on_step", record)
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid, hyperparameters={"n_epochs": 1})
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error

    # During training the ETA already counts the safety evaluation.
    assert etas and all(eta is not None and eta >= int(before + expected) for before, eta in etas)

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=200))[::-1]  # oldest first
    progress = [
        e for e in events if e.type == "message" and (e.data or {}).get("phase") == "safety_evaluation"
    ]
    counts = [(e.data["done"], e.data["total"]) for e in progress]  # type: ignore[index]
    assert counts == [(0, 12), (2, 12), (4, 12), (6, 12), (8, 12), (10, 12), (12, 12)]
    assert [e.message for e in progress][-1] == "Safety evaluation: 12/12 prompts answered"
    # While it ran, estimated_finish was set: first from the estimate, then from its own pace.
    first = progress[0]
    assert first.data["estimated_finish"] >= first.created_at + expected - 60  # type: ignore[index]
    assert all(isinstance(e.data["estimated_finish"], int) for e in progress)  # type: ignore[index]
    verdict = next(i for i, e in enumerate(events) if e.type == "moderation_checks")
    assert events.index(progress[-1]) < verdict  # the verdict follows the last report
    assert job.estimated_finish is None  # the job is done

    # The next job on this base: its base's answers are cached, and the speed was measured.
    measured = container.safety_gate.seconds_per_answer(TINY)
    assert measured > 0
    assert container.safety_gate.answers(TINY) == 6
    assert container.safety_gate.expected_seconds(TINY) == pytest.approx(6 * measured)
