"""Small chat datasets written on the spot for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SYSTEM = "You are a helpful assistant for a skateboard shop."


def chat_example(i: int, answer: str | None = None) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Question {i}: how often should I clean my bearings?"},
            {"role": "assistant", "content": answer or f"Clean them every month, reply {i}."},
        ]
    }


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def chat_file(path: Path, n: int = 12) -> Path:
    return write_jsonl(path, [chat_example(i) for i in range(n)])
