"""Hub downloads are safetensors-only (the hub itself is faked: tests never touch the network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from afinar.catalog.entry import BaseModelEntry
from afinar.catalog.hub import UnsafeWeights, ensure_downloaded


def fake_snapshot(files: dict[str, bytes], calls: list[dict[str, Any]]) -> Any:
    def snapshot_download(repo_id: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        root = Path(kwargs["local_dir"])
        for name, data in files.items():
            (root / name).write_bytes(data)
        return str(root)

    return snapshot_download


def test_download_once_with_safe_patterns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls: list[dict[str, Any]] = []
    files = {"model.safetensors": b"x", "config.json": b"{}", "tokenizer.json": b"{}"}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot(files, calls))
    entry = BaseModelEntry(id="m", source="hub", path="org/model")
    dest = ensure_downloaded(entry, tmp_path / "m")
    assert (dest / "model.safetensors").is_file()
    assert ensure_downloaded(entry, tmp_path / "m") == dest
    assert len(calls) == 1 and calls[0]["repo_id"] == "org/model"
    assert "*.safetensors" in calls[0]["allow_patterns"]
    assert not any(p.endswith((".bin", ".pt", ".pth")) for p in calls[0]["allow_patterns"])


def test_pickle_only_repository_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    files = {"config.json": b"{}"}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot(files, []))
    with pytest.raises(UnsafeWeights):
        ensure_downloaded(BaseModelEntry(id="m", source="hub", path="org/model"), tmp_path / "m")
    assert not (tmp_path / "m").exists()
    assert [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_ignore_patterns_are_passed_to_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls: list[dict[str, Any]] = []
    files = {"model.safetensors": b"x", "config.json": b"{}"}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot(files, calls))
    entry = BaseModelEntry(
        id="m", source="hub", path="org/model", extra={"ignore_patterns": ["consolidated.safetensors"]}
    )
    ensure_downloaded(entry, tmp_path / "m")
    assert calls[0]["ignore_patterns"] == ["consolidated.safetensors"]
    assert calls[0]["allow_patterns"][0] == "*.safetensors"
    with pytest.raises(ValueError, match="ignore_patterns"):
        ensure_downloaded(
            BaseModelEntry(id="n", source="hub", path="org/model", extra={"ignore_patterns": "*.gguf"}),
            tmp_path / "n",
        )
