"""``afinar models export``: a fine-tuned model downloaded as a zip, streamed to a file; errors."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from tests.support.cli import Cli
from tests.support.data import chat_file
from tests.support.tiny_model import TINY


def test_export_writes_the_archive_and_reports_errors(cli: Cli, tmp_path: Path) -> None:
    path = str(chat_file(tmp_path / "train.jsonl", 10))
    options = ["--epochs", "1", "--batch-size", "5", "--follow", "--interval", "0.2"]
    created = cli("jobs", "create", "--model", TINY, "--training-file", path, *options)
    assert created.exit_code == 0, created.output
    job_id = re.search(r"Created (ftjob-\w+)", created.output)
    assert job_id is not None
    model = cli.json("jobs", "show", job_id.group(1))["fine_tuned_model"]

    target = tmp_path / "out" / "adapter.zip"
    target.parent.mkdir()
    done = cli.json("models", "export", model, "--format", "peft", "--output", str(target))
    assert done == {"model": model, "format": "peft", "path": str(target), "bytes": target.stat().st_size}
    with zipfile.ZipFile(target) as zf:
        assert {"adapter_config.json", "adapter_model.safetensors", "model_card.json"} <= set(zf.namelist())
        assert json.loads(zf.read("model_card.json"))["base_model"] == TINY

    bad = cli("models", "export", model, "--format", "onnx", "--output", str(tmp_path / "out" / "x.zip"))
    assert bad.exit_code == 1 and bad.stderr.startswith("error: ") and "gguf, merged, peft" in bad.stderr
    unknown = cli("models", "export", "ft:tiny-llama:default:none:abcdefgh", "--format", "peft")
    assert unknown.exit_code == 1 and "model_not_found" in unknown.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["adapter.zip"]  # no partial files
