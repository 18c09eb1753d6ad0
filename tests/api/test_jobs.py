"""Fine-tuning jobs through the official SDK, in-process, with a worker run step by step."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.data import chat_example, chat_file, write_jsonl
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker


@pytest.fixture
def train_id(client: openai.OpenAI, tmp_path: Path) -> str:
    return client.files.create(
        file=chat_file(tmp_path / "train.jsonl", 12).open("rb"), purpose="fine-tune"
    ).id


def test_create_returns_validating_files_with_every_field(client: openai.OpenAI, train_id: str) -> None:
    job = client.fine_tuning.jobs.create(
        model=TINY, training_file=train_id, suffix="skate", seed=7, metadata={"team": "support"}
    )
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert job.status == "validating_files" and job.seed == 7 and job.model == TINY
    assert job.result_files == [] and job.fine_tuned_model is None and job.trained_tokens is None
    assert job.hyperparameters.n_epochs == "auto" and job.method.type == "supervised"
    assert job.error is not None and job.error.code is None
    assert job.organization_id.startswith("org-") and job.metadata == {"team": "support"}


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"model": "no-such-model"}, "model"),
        ({"training_file": "file-doesnotexist"}, "training_file"),
        ({"validation_file": "file-doesnotexist"}, "validation_file"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"batch_size": 1000}}, "hyperparameters.batch_size"),
        (
            {
                "method": {
                    "type": "supervised",
                    "supervised": {"hyperparameters": {"learning_rate_multiplier": -1}},
                }
            },
            "method.supervised.hyperparameters.learning_rate_multiplier",
        ),
        ({"method": {"type": "supervised", "supervised": "fast"}}, "method.supervised"),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": 3}}},
            "method.supervised.hyperparameters",
        ),
        ({"hyperparameters": ["n_epochs"]}, "hyperparameters"),
        ({"suffix": "x" * 65}, "suffix"),
        ({"seed": -1}, "seed"),
    ],
)
def test_request_problems_are_400_with_param(client: openai.OpenAI, train_id: str, kwargs, param) -> None:  # type: ignore[no-untyped-def]
    args = {"model": TINY, "training_file": train_id, **kwargs}
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(**args)
    assert err.value.param == param
    assert list(client.fine_tuning.jobs.list()) == []


def test_foreign_file_is_invalid(client: openai.OpenAI, container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from afinar.services.orgs import create_org

    other, _ = create_org(container.db, "other")
    foreign = container.files.store(
        other.id, "t.jsonl", "fine-tune", [chat_file(tmp_path / "t.jsonl").read_bytes()]
    )
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=foreign.id)
    assert err.value.param == "training_file" and foreign.id in err.value.message


def test_list_newest_first_after_and_metadata(client: openai.OpenAI, train_id: str) -> None:
    jobs = [
        client.fine_tuning.jobs.create(model=TINY, training_file=train_id, metadata={"n": str(i)})
        for i in range(3)
    ]
    listed = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in listed.data] == [jobs[2].id, jobs[1].id] and listed.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(after=jobs[1].id).data] == [jobs[0].id]
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)] == [j.id for j in reversed(jobs)]
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"n": "1"})] == [jobs[1].id]


def test_cancel_before_training(client: openai.OpenAI, train_id: str, container) -> None:  # type: ignore[no-untyped-def]
    job = client.fine_tuning.jobs.create(model=TINY, training_file=train_id)
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    run_worker(container)  # nothing to claim
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)


def test_unknown_job_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.list_events("ftjob-nope")


def test_too_few_examples_fails_the_job(client: openai.OpenAI, container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fid = client.files.create(file=chat_file(tmp_path / "few.jsonl", 7).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid)
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error.code == "invalid_n_examples"
    assert job.error.param == "training_file"
    assert "7 example(s)" in (job.error.message or "")


def test_malformed_line_names_the_example(client: openai.OpenAI, container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows: list[object] = [chat_example(i) for i in range(12)]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    lines = path.read_text().splitlines()
    lines[4] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    fid = client.files.create(file=path.open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid)
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "failed" and job.error.code == "invalid_training_file"
    assert "Example 5" in (job.error.message or "")
    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert any("Example 5" in m for m in events)


def test_full_run_in_process(client: openai.OpenAI, container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 12).open("rb"), purpose="fine-tune").id
    vid = client.files.create(file=chat_file(tmp_path / "v.jsonl", 3).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model=TINY,
        training_file=fid,
        validation_file=vid,
        suffix="skate",
        seed=3,
        hyperparameters={"n_epochs": 4, "batch_size": 4},
    )
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    assert job.hyperparameters.n_epochs == 4 and job.hyperparameters.batch_size == 4
    assert isinstance(job.hyperparameters.learning_rate_multiplier, float)
    assert job.fine_tuned_model and job.fine_tuned_model.startswith(f"ft:{TINY}:default:skate:")
    assert len(job.fine_tuned_model.split(":")[-1]) == 8
    assert job.trained_tokens and job.trained_tokens > 0 and job.finished_at
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    messages = [e.message for e in events]
    assert messages[0] == "The job has successfully completed"
    assert messages[-1] == f"Created fine-tuning job: {job.id}"
    assert any(m.startswith("Step 12/12: training loss=") for m in messages)
    # Where it trained (AFINAR_TRAIN_DEVICE/PRECISION auto: the CPU in exact fp32) and its peak memory.
    hardware = next(e for e in events if e.message == "Training on cpu in fp32")
    assert hardware.data == {"device": "cpu", "precision": "fp32", "gradient_checkpointing": False}
    peak = next(e for e in events if e.message.startswith("Peak memory "))
    assert peak.data["peak_memory_bytes"] > 0 and peak.message.endswith("iB")  # type: ignore[index]
    metrics = [e for e in events if e.type == "metrics"]
    assert len(metrics) == 12 and metrics[0].data["step"] == 12  # type: ignore[index]
    ckpts = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in ckpts] == [12, 9, 6]
    assert ckpts[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-12"
    # Served base64-encoded, as OpenAI serves it (and as OpenAI's cookbook decodes it).
    csv = base64.b64decode(client.files.content(job.result_files[0]).read()).decode().splitlines()
    assert csv[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert len(csv) == 13 and csv[-1].split(",")[3] != ""
    model_ids = {m.id for m in client.models.list()}
    assert job.fine_tuned_model in model_ids and ckpts[2].fine_tuned_model_checkpoint in model_ids
    assert client.models.retrieve(job.fine_tuned_model).owned_by == "default"
    with pytest.raises(openai.BadRequestError):
        client.models.delete(TINY)
    assert client.models.delete(job.fine_tuned_model).deleted
    assert job.fine_tuned_model not in {m.id for m in client.models.list()}
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(job.fine_tuned_model)


def test_model_card_and_adapter_export(client: openai.OpenAI, container, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import io
    import zipfile

    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid, hyperparameters={"n_epochs": 1})
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    name = str(job.fine_tuned_model)
    card = client.get(f"/afinar/models/{name}/card", cast_to=object)
    assert card["base_model"] == TINY and card["trained_tokens"] == job.trained_tokens  # type: ignore[index]
    assert card["training_files"][0]["sha256"] and card["hyperparameters"]["n_epochs"] == 1  # type: ignore[index]
    training = card["training"]  # type: ignore[index]
    assert training["device"] == "cpu" and training["precision"] == "fp32"
    assert training["gradient_checkpointing"] is False and training["peak_memory_bytes"] > 0
    raw = client.get(
        f"/afinar/models/{name}/adapter", cast_to=openai._legacy_response.HttpxBinaryResponseContent
    )
    names = zipfile.ZipFile(io.BytesIO(raw.content)).namelist()
    assert {"adapter_config.json", "adapter_model.safetensors", "model_card.json"} <= set(names)
    assert not any(n.endswith(".pt") for n in names)
    with pytest.raises(openai.BadRequestError):
        client.get(f"/afinar/models/{TINY}/card", cast_to=object)


def test_qlora_job_is_echoed_and_trains_on_an_nf4_base(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    hyper = {"n_epochs": 1, "batch_size": 4}
    qlora = client.fine_tuning.jobs.create(
        model=TINY, training_file=fid, seed=5, hyperparameters=hyper, extra_body={"quantization": "nf4"}
    )
    plain = client.fine_tuning.jobs.create(model=TINY, training_file=fid, seed=5, hyperparameters=hyper)
    assert qlora.model_extra and qlora.model_extra["quantization"] == "nf4"
    assert plain.model_extra and plain.model_extra["quantization"] == "none"
    run_worker(container)
    losses = {}
    for job in (qlora, plain):
        done = client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded", done.error
        assert done.fine_tuned_model and done.trained_tokens
        events = client.fine_tuning.jobs.list_events(job.id, limit=100)
        steps = sorted((e.data for e in events if e.type == "metrics"), key=lambda d: d["step"])  # type: ignore[index]
        losses[job.id] = [d["train_loss"] for d in steps]  # type: ignore[index]
    again = client.fine_tuning.jobs.retrieve(qlora.id)
    assert again.model_extra and again.model_extra["quantization"] == "nf4"
    messages = [e.message for e in client.fine_tuning.jobs.list_events(qlora.id, limit=100)]
    assert any(m.startswith("Training on cpu in fp32 on an NF4-quantised base") for m in messages)
    card = container.models.card(again.organization_id, again.fine_tuned_model)
    assert card["training"]["quantization"] == "nf4"
    # The child trained on the 4-bit base: same data and seed, a close but different loss curve.
    assert losses[qlora.id] != losses[plain.id]
    assert losses[qlora.id] == pytest.approx(losses[plain.id], rel=0.05)


@pytest.mark.parametrize("value", ["int4", "NF4", 4, ""])
def test_unknown_quantization_is_400_naming_the_allowed_values(
    client: openai.OpenAI, train_id: str, value: Any
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=train_id, extra_body={"quantization": value})
    assert err.value.param == "quantization" and err.value.code is None
    assert "'none', 'nf4'" in err.value.message
    assert list(client.fine_tuning.jobs.list()) == []


def test_quantization_without_torchao_is_400(
    client: openai.OpenAI, train_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torchao", None)  # as when the package is not installed
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=train_id, extra_body={"quantization": "nf4"})
    assert err.value.param == "quantization"
    assert "not available on this server" in err.value.message and "torchao" in err.value.message
    none = {"quantization": "none"}
    job = client.fine_tuning.jobs.create(model=TINY, training_file=train_id, extra_body=none)
    assert job.model_extra and job.model_extra["quantization"] == "none"
