"""The first requests of a fresh ``afinar serve`` all succeed, however they overlap.

A fresh process imported torch, transformers, peft and scikit-learn lazily, on the first request
that needed them; two first requests on two threads imported them at once, which lazy packages do
not survive (``ImportError: cannot import name 'AutoTokenizer' from 'transformers'``), and loaded
two models at once, which transformers does not survive either (untied weights left on the meta
device: ``Tensor.item() cannot be called on meta tensors`` at the first generation). Before the
fix this test failed on every run (catalog/ml_stack.py has the fix).

It starts a server on an empty data directory and, the moment its port accepts connections,
uploads a file and then fires the first chat completion, moderation, estimate and file report at
once, through the official SDK.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.data import chat_file
from tests.support.server import Server, start_listening
from tests.support.tiny_model import TINY


@pytest.fixture
def fresh(tmp_path: Path, tiny_catalog: Path) -> Iterator[Server]:
    srv = start_listening(Server(tmp_path / "data", tiny_catalog))
    yield srv
    srv.stop()


def test_overlapping_first_requests_all_succeed(fresh: Server, tmp_path: Path) -> None:
    client = fresh.client()
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id

    def chat() -> Any:
        return client.chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": "hi"}], max_completion_tokens=2, seed=1
        )

    def moderation() -> Any:
        return client.moderations.create(input="Which wheels should I buy for street skating?")

    def estimate() -> Any:
        return client.post(
            "/afinar/estimates",
            cast_to=object,
            body={"model": TINY, "training_file": fid, "method": {"type": "supervised"}},
        )

    def report() -> Any:
        return client.get(f"/afinar/files/{fid}/report", cast_to=object, options={"params": {"model": TINY}})

    calls: list[Callable[[], Any]] = [chat, moderation, estimate, report]
    together = threading.Barrier(len(calls))

    def fire(call: Callable[[], Any]) -> Any:
        together.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {call.__name__: pool.submit(fire, call) for call in calls}
    answers: dict[str, Any] = {}
    errors = []
    for name, future in futures.items():
        try:
            answers[name] = future.result()
        except openai.APIError as exc:
            errors.append(f"{name}: {exc!r}")
    log = fresh.log.read_text()
    assert not errors, "\n".join(errors) + "\n" + log[-4000:]

    assert answers["chat"].choices[0].message.content is not None
    assert len(answers["moderation"].results) == 1
    assert answers["estimate"]["object"] == "afinar.estimate" and answers["estimate"]["n_examples"] == 10
    assert answers["report"]["object"] == "afinar.file_report" and answers["report"]["job_error"] is None
    assert "Traceback" not in log, log[-4000:]  # nor did a background thread fail
