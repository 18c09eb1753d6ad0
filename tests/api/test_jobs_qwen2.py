"""A second architecture end to end: a tiny random Qwen2 (biased q/k/v, Qwen2.5's chat template,
``<|im_end|>`` as end of turn) uploaded, trained by the worker and served, through the SDK.

The tiny Llama of the other tests shares its tokenizer layout with the bundled SmolLM2; this one
proves the catalogue's promise that another family's base trains and serves with its own chat
template and end-of-turn token (docs/models.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import openai
import pytest

from tests.support.data import write_jsonl
from tests.support.tiny_model import TINY_QWEN2, build_tiny_qwen2, write_catalog
from tests.support.worker import run_worker


@pytest.fixture(scope="module")
def qwen2_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = build_tiny_qwen2(tmp_path_factory.mktemp("qwen2") / "model")
    return write_catalog(tmp_path_factory.mktemp("qwen2-catalog") / "catalog.toml", model_dir, TINY_QWEN2)


@pytest.fixture
def settings(settings, qwen2_catalog: Path):  # type: ignore[no-untyped-def]
    """The shared settings with the tiny Qwen2 as the operator's catalogue."""
    return settings.model_copy(update={"catalog_file": qwen2_catalog})


def test_qwen2_trains_and_serves_end_to_end(client: openai.OpenAI, container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # One short answer, learnt by heart: the tuned model then ends its turn by itself, so the
    # chat below stops on <|im_end|> (an untrained random model would run to max_tokens).
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}: which wheels for street?"},
                {"role": "assistant", "content": "Hard wheels."},
            ]
        }
        for i in range(10)
    ]
    fid = client.files.create(file=write_jsonl(tmp_path / "t.jsonl", rows).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model=TINY_QWEN2,
        training_file=fid,
        seed=5,
        hyperparameters={"n_epochs": 8, "batch_size": 10, "learning_rate_multiplier": 50},
    )
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    assert job.trained_tokens and job.trained_tokens > 0
    assert job.fine_tuned_model and job.fine_tuned_model.startswith(f"ft:{TINY_QWEN2}:")
    losses = [
        e.data["train_loss"]  # type: ignore[index]
        for e in client.fine_tuning.jobs.list_events(job.id, limit=100)
        if e.type == "metrics"
    ]
    assert len(losses) == 8 and all(math.isfinite(loss) for loss in losses)
    assert losses[0] < losses[-1]  # events are newest first: the loss went down

    reply = client.chat.completions.create(
        model=job.fine_tuned_model,
        messages=[{"role": "user", "content": "Question 3: which wheels for street?"}],
        max_tokens=24,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop", choice.message.content  # ended on <|im_end|>
    assert choice.message.content is not None and "<|im_end|>" not in choice.message.content
    assert "<|im_start|>" not in choice.message.content
    assert reply.usage is not None and reply.usage.completion_tokens < 24
