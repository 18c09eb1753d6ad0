"""Where the master key comes from: the environment, a file, or a generated 0600 file."""

from __future__ import annotations

import base64
import logging
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from afinar.config import Settings
from afinar.crypto.keys import KeyUnavailable, generate_key, load_master_key


def test_generated_once_with_mode_0600_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with caplog.at_level(logging.WARNING, logger="afinar.crypto"):
        first = load_master_key(settings)
    assert "production" in caplog.text
    path = tmp_path / "data" / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) == 32
    assert load_master_key(settings) == first  # stable across starts


def test_from_environment_value_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = generate_key()
    monkeypatch.setenv("AFINAR_MASTER_KEY", base64.b64encode(key).decode())
    assert load_master_key(Settings(data_dir=tmp_path)) == key
    assert not (tmp_path / "master.key").exists()
    monkeypatch.delenv("AFINAR_MASTER_KEY")
    other = generate_key()
    (tmp_path / "k").write_text(base64.b64encode(other).decode() + "\n")
    assert load_master_key(Settings(data_dir=tmp_path, master_key_file=tmp_path / "k")) == other


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode()])
def test_malformed_key_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(KeyUnavailable):
        load_master_key(Settings(data_dir=tmp_path, master_key=SecretStr(bad)))
