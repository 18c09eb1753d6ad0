"""Helpers for the evals tests: a tiny shop database, a scripted engine, eval builders."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.inference.engine import collect
from afinar.inference.types import Delta, Event, Finished, GenerationRequest, GenerationResult, Started

ITEM_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question"],
}


def build_shop(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, category TEXT, price REAL);
        INSERT INTO products VALUES (1, 'Street deck', 'deck', 59.0), (2, 'Cruiser wheels', 'wheels', 35.0),
                                    (3, 'Park deck', 'deck', 64.0), (4, 'Bearings', 'bearings', 19.5);
        """
    )
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def shop_db(tmp_path: Path) -> Path:
    return build_shop(tmp_path / "shop.sqlite")


@pytest.fixture
def db_file_id(client: openai.OpenAI, shop_db: Path) -> str:
    return client.files.create(file=("shop.sqlite", shop_db.read_bytes()), purpose="evals").id


class ScriptedEngine:
    """Answers with ``answer(request)``; records requests. Stands in for the engine (judges, cancels)."""

    def __init__(self, answer: Callable[[GenerationRequest], str]) -> None:
        self.answer = answer
        self.requests: list[GenerationRequest] = []

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        self.requests.append(request)
        text = self.answer(request)
        yield Started(prompt_tokens=11)
        yield Delta(index=0, text=text)
        yield Finished(index=0, finish_reason="stop", completion_tokens=3)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return collect([e async for e in self.stream(request)], request.params.n)

    def close(self) -> None:  # the container closes its engine
        pass


# The simplest criterion: the sample's text equals the item's answer.
EXACT_MATCH = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


def make_eval(client: openai.OpenAI, criteria: list[dict[str, Any]], **kw: Any) -> Any:
    return client.evals.create(
        name=kw.pop("name", "shop eval"),
        data_source_config={"type": "custom", "item_schema": kw.pop("item_schema", ITEM_SCHEMA)},
        testing_criteria=criteria,  # type: ignore[arg-type]
        **kw,
    )


def jsonl_source(rows: list[tuple[dict[str, Any], str]]) -> dict[str, Any]:
    """A ``jsonl`` data source whose samples are given: ``[(item, output_text)]``."""
    return {
        "type": "jsonl",
        "source": {
            "type": "file_content",
            "content": [{"item": i, "sample": {"output_text": o}} for i, o in rows],
        },
    }
