"""A job that publishes converts its adapter to a GGUF LoRA (``adapter.gguf``) sealed with it, for
the llama.cpp backend; a failed conversion leaves the job succeeded with an event, and the PEFT
export leaves the GGUF out."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.errors import ServerError
from tests.support.billing import create, roomy_settings  # noqa: F401  (fixture: settings)
from tests.support.data import chat_file
from tests.support.worker import run_worker

pytest.importorskip("xllamacpp")


def tuned(client: openai.OpenAI, container: Any, tmp_path: Path) -> Any:
    container.settings.safety_eval = False  # keeps the test short
    container.settings.gguf_at_publish = True  # the suite pins the builtin backend, where it is off
    upload = client.files.create(file=chat_file(tmp_path / "train.jsonl", 10).open("rb"), purpose="fine-tune")
    job = create(client, upload.id, epochs=1)
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    return job


def org_of(container: Any) -> str:
    from afinar.services.orgs import authenticate

    return str(authenticate(container.db, container.settings.bootstrap_api_key).org_id)


def sealed_members(container: Any, org_id: str, name: str) -> set[str]:
    """The adapter's files as stored (no plaintext directory left, as on another machine)."""
    adapter = container.models.adapter_dir(org_id, name)
    shutil.rmtree(adapter, ignore_errors=True)  # the worker removed it after sealing
    return {member for member, _size, _stream in container.artefacts.members(org_id, adapter)}


def test_publish_seals_a_gguf_the_peft_export_leaves_out(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    job = tuned(client, container, tmp_path)
    assert {"adapter.gguf", "adapter_config.json"} <= sealed_members(
        container, org_of(container), job.fine_tuned_model
    )
    archive = b"".join(
        container.models.export_archive(org_of(container), job.fine_tuned_model, card=lambda n, c: c)
    )
    names = {Path(n).name for n in zipfile.ZipFile(io.BytesIO(archive)).namelist()}
    assert "adapter_config.json" in names and "adapter.gguf" not in names


def test_a_failed_conversion_is_an_event_not_a_failed_job(
    client: openai.OpenAI, container: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from afinar.inference import gguf

    def broken(adapter_dir: Path, base_dir: Path, dest: Path) -> Path:
        raise ServerError("GGUF conversion failed: the converter crashed", code="model_error")

    monkeypatch.setattr(gguf, "adapter_gguf", broken)
    job = tuned(client, container, tmp_path)
    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any(m.startswith("GGUF conversion failed") for m in events), events
    assert "adapter.gguf" not in sealed_members(container, org_of(container), job.fine_tuned_model)
