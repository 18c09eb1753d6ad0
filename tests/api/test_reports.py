"""The additive file report and dry-run estimate, through the SDK's raw HTTP helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.store import train_speeds
from afinar.training.quant import NF4_BYTES_PER_PARAM
from tests.support.data import chat_example, chat_file, write_jsonl
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker


def report(client: openai.OpenAI, file_id: str, **query: Any) -> dict[str, Any]:
    return client.get(
        f"/afinar/files/{file_id}/report", cast_to=object, options={"params": {"model": TINY, **query}}
    )  # type: ignore[return-value]


def test_report_lists_every_problem_with_its_line(client: openai.OpenAI, tmp_path: Path) -> None:
    rows: list[Any] = [chat_example(i) for i in range(12)]
    rows[2] = {"messages": [{"role": "user", "content": "hi"}]}  # no assistant message
    rows[6]["messages"][1]["content"] = [{"type": "image_url", "image_url": {"url": "http://x"}}]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    lines = path.read_text().splitlines()
    lines[9] = "not json"
    path.write_text("\n".join(lines) + "\n")
    fid = client.files.create(file=path.open("rb"), purpose="fine-tune").id
    body = report(client, fid)
    where = {(e["example"], e["code"]) for e in body["errors"]}
    assert (3, "missing_assistant_message") in where and (10, "invalid_json") in where
    assert any(e["example"] == 7 and "text only" in e["message"] for e in body["errors"])
    assert body["job_error"]["code"] == "invalid_training_file"


def test_report_unknown_file_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        report(client, "file-nope")


def test_estimate_equals_trained_tokens_of_the_job(client: openai.OpenAI, container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 11).open("rb"), purpose="fine-tune").id
    body = {"model": TINY, "training_file": fid, "hyperparameters": {"n_epochs": 2, "batch_size": 3}}
    est: dict[str, Any] = client.post("/afinar/estimates", cast_to=object, body=body)  # type: ignore[assignment]
    assert est["job_error"] is None and est["n_epochs"] == 2 and est["n_examples"] == 11
    assert est["billable_tokens"] > 0 and est["estimated_seconds"] > 0
    price = container.usage.price_of(TINY)[1].training_per_1m / 1e6  # dollars per 1M tokens
    cost = est["cost"]
    assert cost["currency"] == "usd" and cost["training_price_per_1m_tokens"] == pytest.approx(price)
    assert cost["list_price"] == pytest.approx(est["billable_tokens"] * price / 1e6, abs=1e-6)
    free = cost["free_training_tokens_left_today"]
    assert cost["free_training_tokens_applied"] == min(free, est["billable_tokens"])
    assert cost["amount"] == pytest.approx(max(0, est["billable_tokens"] - free) * price / 1e6, abs=1e-6)
    # Nothing trained this base yet: the catalogue's constant speed.
    assert est["speed_source"] == "catalogue"
    assert est["train_tokens_per_second"] == container.catalog.require(TINY).train_tokens_per_second
    job = client.fine_tuning.jobs.create(**body)
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded"
    assert job.trained_tokens == est["billable_tokens"]
    # Each step's event carries its tokens/s; the job recorded its steady speed for the base...
    steps = [
        e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data if e.type == "metrics"
    ]
    assert len(steps) == 8 and all(d["tokens_per_second"] > 0 for d in steps)  # type: ignore[index]
    measured = train_speeds.latest(container.db, TINY)
    assert measured is not None and measured.job_id == job.id and measured.device.startswith("cpu:")
    # ...and the next estimate assumes it.
    again: dict[str, Any] = client.post("/afinar/estimates", cast_to=object, body=body)  # type: ignore[assignment]
    assert again["speed_source"] == "measured"
    assert again["train_tokens_per_second"] == pytest.approx(measured.tokens_per_second)
    assert again["estimated_seconds"] == pytest.approx(again["billable_tokens"] / measured.tokens_per_second)


def test_estimate_reports_request_errors_as_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.post("/afinar/estimates", cast_to=object, body={"model": TINY, "training_file": "file-x"})
    assert err.value.param == "training_file"


def test_estimate_reports_the_quantization_and_its_training_memory(
    client: openai.OpenAI, tmp_path: Path
) -> None:
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    body: dict[str, Any] = {"model": TINY, "training_file": fid}
    plain: dict[str, Any] = client.post("/afinar/estimates", cast_to=object, body=body)  # type: ignore[assignment]
    nf4: dict[str, Any] = client.post(
        "/afinar/estimates", cast_to=object, body={**body, "quantization": "nf4"}
    )  # type: ignore[assignment]
    assert plain["quantization"] == "none" and nf4["quantization"] == "nf4"
    # The tiny Llama: 2 layers of 7 projections (36,864 weights a layer), embeddings and norms
    # (25,920 values); LoRA r=16 on the 7 projections: 16 × (in + out) each, 16,384 a layer.
    linear, other, lora = 2 * 36_864, 400 * 64 + 5 * 64, 2 * 16_384
    assert plain["training_memory_bytes"] == 2 * (linear + other) + 16 * lora  # bf16 + fp32 LoRA/AdamW
    assert nf4["training_memory_bytes"] == int(linear * NF4_BYTES_PER_PARAM + 2 * other) + 16 * lora
    assert nf4["training_memory_bytes"] < plain["training_memory_bytes"]
    # Everything else in the estimate is the same.
    same = {k: v for k, v in nf4.items() if k not in ("quantization", "training_memory_bytes")}
    assert same == {k: v for k, v in plain.items() if k not in ("quantization", "training_memory_bytes")}
    with pytest.raises(openai.BadRequestError) as err:
        client.post("/afinar/estimates", cast_to=object, body={**body, "quantization": "q4"})
    assert err.value.param == "quantization"
