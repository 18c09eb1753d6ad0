"""Eval helpers: an item schema, builders for evals and ``jsonl`` sources, a scripted engine, gate parts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import openai

from afinar.inference.engine import collect
from afinar.inference.types import Delta, Event, Finished, GenerationRequest, GenerationResult, Started

ITEM_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question"],
}


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


# An eval gate that every answer passes, and the completions source it samples the job with.
ALWAYS = {
    "type": "string_check",
    "name": "answered",
    "input": "{{sample.output_text}}",
    "reference": "zzz-never-said",
    "operation": "ne",
}
SOURCE = {
    "type": "completions",
    "source": {
        "type": "file_content",
        "content": [{"item": {"question": f"Wheels for street, {i}?"}} for i in range(3)],
    },
    "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]},
    "sampling_params": {"temperature": 0, "max_completion_tokens": 3},
}
