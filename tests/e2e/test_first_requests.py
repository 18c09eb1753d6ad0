"""The first requests of a fresh ``afinar serve`` all succeed, however they overlap.

A fresh process imports torch, transformers, peft and scikit-learn lazily, on the first request
that needs them. Two first requests on two threads used to import them at the same time, and
lazily imported packages are not safe for that: the first moderation after a start answered 500
(``cannot import name 'AutoModel' from 'transformers'``). This test starts a server on an empty
data directory and, the moment its port accepts connections, fires a chat completion, a
moderation, an estimate and a file report at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TINY
from tests.e2e.server import API_KEY, Server, start_listening
from tests.support.data import chat_file


@pytest.fixture
def fresh(tmp_path: Path, tiny_catalog: Path) -> Iterator[Server]:
    srv = start_listening(Server(tmp_path / "data", tiny_catalog))
    yield srv
    srv.stop()


def test_overlapping_first_requests_all_succeed(fresh: Server, tmp_path: Path) -> None:
    import openai

    client = fresh.client()
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 6).open("rb"), purpose="fine-tune").id
    http = httpx.Client(base_url=fresh.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)

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
        response = http.get(f"/afinar/files/{fid}/report", params={"model": TINY})
        response.raise_for_status()
        return response.json()

    calls: list[Callable[[], Any]] = [chat, moderation, estimate, report]
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        errors = []
        for call, future in zip(calls, futures, strict=True):
            try:
                future.result()
            except (openai.APIError, httpx.HTTPError) as exc:
                errors.append(f"{call.__name__}: {exc!r}")
    assert not errors, "\n".join(errors) + "\n" + fresh.log.read_text()[-4000:]
