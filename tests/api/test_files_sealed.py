"""Files encrypted at rest through the API: plaintext size and hash, tamper errors, scratch hygiene."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.blobs.scratch import Scratch
from afinar.crypto.stream import HEADER_SIZE, SEGMENT


def test_upload_is_ciphertext_reporting_the_plaintext(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    data = os.urandom(SEGMENT) + b'{"messages": []}\n' * 10  # more than one segment
    path = tmp_path / "data.jsonl"
    path.write_bytes(data)
    f = client.files.create(file=path.open("rb"), purpose="user_data")
    row = container.files.get(_org(container), f.id)
    stored = container.blobs.path(row.blob_key).read_bytes()
    assert f.bytes == len(data) and row.sha256 == hashlib.sha256(data).hexdigest()
    assert data[-200:] not in stored and len(stored) > len(data)
    assert client.files.content(f.id).read() == data
    with container.files.materialize(_org(container), f.id) as plain:
        assert plain.read_bytes() == data
        assert stat.S_IMODE(plain.stat().st_mode) == 0o600 and plain.parent == container.settings.scratch_dir
    assert not plain.exists()


def test_tampered_blob_is_a_server_error_not_wrong_data(
    client: openai.OpenAI, container: Any, tmp_path: Path
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"messages": []}\n' * 100)
    f = client.files.create(file=path.open("rb"), purpose="user_data")
    blob = container.blobs.path(container.files.get(_org(container), f.id).blob_key)
    raw = bytearray(blob.read_bytes())
    raw[HEADER_SIZE + 5] ^= 0x01
    blob.write_bytes(bytes(raw))
    with pytest.raises(openai.InternalServerError) as err:
        client.files.content(f.id).read()
    assert err.value.code == "blob_integrity_error" and "cannot be decrypted" in err.value.message


def test_sweep_removes_only_leftovers_of_dead_processes(tmp_path: Path) -> None:
    scratch = Scratch(tmp_path / "scratch")
    assert stat.S_IMODE(scratch.root.stat().st_mode) == 0o700
    dead = scratch.root / "999999999-old.jsonl"  # no such pid
    dead.write_text("secret")
    with scratch.file([b"live"]) as live:
        assert scratch.sweep() == 1
        assert live.exists() and not dead.exists()
    assert not live.exists()


def _org(container: Any) -> str:
    from afinar.store.orgs import first_org

    with container.db.session() as s:
        org = first_org(s)
        assert org is not None
        return str(org.id)
