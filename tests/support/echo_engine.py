"""A torch-free inference engine for tests of the wire: it echoes, it does not generate.

``EchoEngine`` implements ``afinar.inference.protocol.InferenceEngine``. Every choice answers the
last user message (or a fixed ``reply``), after any ``response_prefix``. A token is a word with
the whitespace before it, so counts are easy to predict: the prompt is every message's words
plus one per message; ``max_tokens`` cuts the answer (``finish_reason: "length"``), a stop
string ends it (``"stop"``). Prompts over ``context_length`` are refused with the built-in
engine's ``context_length_exceeded`` error. Use it as ``Container(settings, engine=EchoEngine())``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

from afinar.errors import InvalidRequest
from afinar.inference.types import (
    Choice,
    Delta,
    Event,
    Finished,
    GenerationRequest,
    GenerationResult,
    Started,
)

_TOKEN = re.compile(r"\s*\S+")


def tokens(text: str) -> list[str]:
    """The echo engine's tokens: each word with the whitespace before it."""
    return _TOKEN.findall(text)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


class EchoEngine:
    def __init__(self, reply: str | None = None) -> None:
        self.reply = reply
        self.requests: list[GenerationRequest] = []
        self.unloaded: list[Path] = []
        self.closed = False

    # --- what a request produces -------------------------------------------------------------

    def prompt_tokens(self, request: GenerationRequest) -> int:
        return sum(len(tokens(_text(m.get("content")))) + 1 for m in request.messages)

    def answer(self, request: GenerationRequest) -> str:
        if self.reply is not None:
            return request.response_prefix + self.reply
        users = [m for m in request.messages if m.get("role") == "user"]
        return request.response_prefix + (_text(users[-1].get("content")) if users else "")

    def _choice(self, request: GenerationRequest) -> tuple[list[str], str]:
        """The pieces of one choice and its finish reason."""
        text, finish = self.answer(request), "stop"
        for stop in request.params.stop:
            if stop in text:
                text = text[: text.index(stop)]
        pieces = tokens(text)
        limit = request.params.max_tokens
        if limit is not None and len(pieces) > limit:
            pieces, finish = pieces[:limit], "length"
        return pieces, finish

    def _accept(self, request: GenerationRequest) -> int:
        self.requests.append(request)
        prompt = self.prompt_tokens(request)
        context, asked = request.context_length, request.params.max_tokens
        if context is not None and (prompt >= context or (asked is not None and prompt + asked > context)):
            detail = (
                f"you requested {prompt + asked} tokens ({prompt} in the messages, {asked} in the completion)"
                if asked is not None
                else f"your messages resulted in {prompt} tokens"
            )
            raise InvalidRequest(
                f"This model's maximum context length is {context} tokens. However, {detail}. "
                "Please reduce the length of the messages or completion.",
                param="messages",
                code="context_length_exceeded",
            )
        return prompt

    def events(self, request: GenerationRequest) -> Iterator[Event]:
        yield Started(prompt_tokens=self._accept(request))
        for i in range(request.params.n):
            pieces, finish = self._choice(request)
            for piece in pieces:
                yield Delta(index=i, text=piece)
            yield Finished(index=i, finish_reason=finish, completion_tokens=len(pieces))

    # --- InferenceEngine --------------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
        for event in self.events(request):
            yield event
            await asyncio.sleep(0)  # let the caller interleave, as a real engine does

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return self.generate_sync(request)

    def generate_sync(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult:
        prompt = self._accept(request)
        choices = []
        for i in range(request.params.n):
            pieces, finish = self._choice(request)
            text = "".join(pieces)
            choices.append(Choice(index=i, text=text, finish_reason=finish, completion_tokens=len(pieces)))
        return GenerationResult(prompt_tokens=prompt, choices=choices)

    def unload(self, adapter_path: Path) -> bool:
        self.unloaded.append(Path(adapter_path))
        return False

    def loaded_adapters(self) -> list[Path]:
        return []

    def queued(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True
