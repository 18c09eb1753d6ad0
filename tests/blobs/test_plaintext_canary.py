"""Canary scans: customer text never lies in plaintext under the data directory.

A random canary goes into a training file uploaded through the official SDK; a job trains on it
and its model is served. Then every file under the data directory (blobs, job directories,
scratch, the SQLite database and its ``-wal``) is scanned for the canary, raw and base64-encoded:
in normal operation, after deleting the file and the model, and after deleting the organisation.
After the organisation is gone, a ciphertext copied aside beforehand no longer decrypts.
"""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

from afinar.errors import ServerError
from tests.support.data import chat_example, write_jsonl
from tests.support.evals import EXACT_MATCH, make_eval
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker


def needles(canary: str) -> list[bytes]:
    """The canary as bytes, and inside base64 at each of the three alignments."""
    raw = canary.encode()
    out = [raw]
    for pad in range(3):
        enc = base64.b64encode(b"x" * pad + raw + b"x" * 3)
        skip = (pad * 4 + 2) // 3 + 1  # characters touched by the padding bytes
        out.append(enc[skip : skip + 20])
    return out


def scan(root: Path, *canaries: str) -> list[str]:
    """``path: canary`` for each file under ``root`` holding a canary (raw or base64)."""
    hits = []
    wanted = [(c, n) for c in canaries for n in needles(c)]
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {c}" for c, n in wanted if n in data]
    return hits


def test_needles_find_base64_at_every_alignment() -> None:
    canary = uuid.uuid4().hex
    for pad in range(3):
        blob = base64.b64encode(b"p" * pad + canary.encode() + b"tail")
        assert any(n in blob for n in needles(canary)[1:]), pad


def training_rows(canary: str, n: int = 10) -> list[dict[str, Any]]:
    rows = [chat_example(i) for i in range(n)]
    rows[3]["messages"][2]["content"] = f"The secret code is {canary}."
    return rows


def test_canary_never_in_plaintext_and_gone_after_org_deletion(
    client: openai.OpenAI, container: Any, settings: Any, tmp_path: Path, http: Any
) -> None:
    data_dir = settings.data_dir
    canary, canary2 = uuid.uuid4().hex, uuid.uuid4().hex
    train = write_jsonl(tmp_path / "train.jsonl", training_rows(canary))
    f = client.files.create(file=train.open("rb"), purpose="fine-tune")
    assert f.bytes == train.stat().st_size  # the plaintext's size, not the ciphertext's
    assert client.files.content(f.id).read() == train.read_bytes()

    job = client.fine_tuning.jobs.create(model=TINY, training_file=f.id, hyperparameters={"n_epochs": 1})
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    model = str(job.fine_tuned_model)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.choices[0].message is not None  # the encrypted adapter loads and serves
    org_id = job.organization_id

    # normal operation: nothing in plaintext, no scratch copy left, no plaintext job directory
    assert scan(data_dir, canary) == []
    assert not any((settings.jobs_dir).glob(f"{job.id}/**/*.safetensors"))
    assert list(settings.scratch_dir.iterdir()) == []
    assert any(k.startswith(f"{org_id}/models/{job.id}/") for k in container.blobs.keys(f"{org_id}/"))

    # deleting the file and the model removes their blobs; nothing to find before or after
    client.files.delete(f.id)
    assert not container.blobs.exists(f"{org_id}/files/{f.id}")
    assert client.models.delete(model).deleted
    assert not any(k.startswith(f"{org_id}/models/") for k in container.blobs.keys(f"{org_id}/"))
    assert not (settings.jobs_dir / job.id).exists()
    assert scan(data_dir, canary) == []

    # another file, its ciphertext copied aside; then the organisation goes
    second = client.files.create(
        file=write_jsonl(tmp_path / "second.jsonl", training_rows(canary2)).open("rb"), purpose="fine-tune"
    )
    key = f"{org_id}/files/{second.id}"
    aside = tmp_path / "aside.bin"
    shutil.copyfile(container.blobs.path(key), aside)
    assert scan(data_dir, canary, canary2) == []

    from afinar.cli.main import app

    env = {"AFINAR_DATA_DIR": str(data_dir), "AFINAR_CATALOG_FILE": str(settings.catalog_file)}
    refused = CliRunner().invoke(app, ["admin", "orgs", "delete", org_id], env=env)
    assert refused.exit_code != 0 and container.blobs.exists(key)
    result = CliRunner().invoke(app, ["admin", "orgs", "delete", org_id, "--yes", "--json"], env=env)
    assert result.exit_code == 0, result.output

    with pytest.raises(openai.AuthenticationError):
        client.models.list()  # its keys stopped working
    assert container.blobs.keys(f"{org_id}/") == [] and not container.blobs.exists(key)
    assert scan(data_dir, canary, canary2) == []

    # the ciphertext put back where it was does not decrypt: the data key is gone
    from afinar.services.container import Container

    fresh = Container(settings)
    try:
        target = fresh.blobs.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(aside, target)
        with pytest.raises(ServerError):
            b"".join(fresh.sealed.iter_bytes(org_id, key))
    finally:
        fresh.close()

    # running it again finishes what is left (idempotent) and removes the planted blob too
    again = CliRunner().invoke(app, ["admin", "orgs", "delete", org_id, "--yes"], env=env)
    assert again.exit_code == 0, again.output
    assert container.blobs.keys(f"{org_id}/") == []


def test_inline_eval_items_never_in_plaintext(client: openai.OpenAI, container: Any, settings: Any) -> None:
    canary = uuid.uuid4().hex
    ev = make_eval(client, [EXACT_MATCH], name="canary eval", item_schema={"type": "object"})
    content = [{"item": {"answer": f"code {canary}"}, "sample": {"output_text": f"code {canary}"}}]
    source: Any = {"type": "jsonl", "source": {"type": "file_content", "content": content}}
    run = client.evals.runs.create(ev.id, data_source=source)
    run_worker(container)
    done = client.evals.runs.retrieve(run.id, eval_id=ev.id)
    assert done.status == "completed" and done.result_counts.passed == 1
    items = list(client.evals.runs.output_items.list(run.id, eval_id=ev.id))
    assert items[0].datasource_item == {"answer": f"code {canary}"}  # read back in clear
    assert canary in items[0].sample.to_json() and items[0].results[0].passed
    assert scan(settings.data_dir, canary) == []  # ...but sealed in the database and its -wal
