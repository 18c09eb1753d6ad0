"""Runtime moderation of chat completions, for organisations that switched it on.

* **Input**: every message's text (all roles: a client can write the "assistant" turns of the
  history too) is moderated before anything is generated; a flagged request is refused with 400
  ``content_policy_violation`` (param ``messages``), and nothing is billed.
* **Output, non-streaming**: each choice's text (content and tool-call arguments) is moderated;
  a flagged choice keeps no content (``content: null``, no tool calls, no logprobs) and ends
  with ``finish_reason: "content_filter"``.
* **Output, streaming**: a choice's content is held back and released in windows of at least
  ``window`` characters, each moderated (with the tail of the text already released, so a
  harmful sentence cut in two is still seen whole) before it goes out; the rest is moderated
  when the choice ends. When a window is flagged it is dropped, the choice ends with an empty
  delta and ``finish_reason: "content_filter"``, and what the engine still generates for that
  choice is discarded. Text released before the flagged window stays with the client.

Usage is the engine's: a filtered output is billed for every token that was generated.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from afinar.errors import InvalidRequest
from afinar.inference.assemble import ChoiceDelta

CONTENT_FILTER = "content_filter"
POLICY_CODE = "content_policy_violation"
DEFAULT_WINDOW = 200  # characters released per moderated window
OVERLAP = 200  # characters of released text moderated again with the next window


class _Result(Protocol):
    @property
    def flagged(self) -> bool: ...

    @property
    def flagged_categories(self) -> list[str]: ...


class Moderator(Protocol):
    """What the moderation engine (``safety.moderation.ModerationEngine``) offers."""

    def moderate(self, texts: list[str]) -> Sequence[_Result]: ...


def message_texts(messages: Sequence[dict[str, Any]]) -> list[str]:
    """The text of each message: string content, text/refusal parts, tool-call arguments."""
    out = []
    for msg in messages:
        parts: list[str] = []
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    parts.append(str(part.get("text") or part.get("refusal") or ""))
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                parts.append(str(fn.get("arguments") or ""))
        if isinstance(msg.get("refusal"), str):
            parts.append(msg["refusal"])
        text = "\n".join(p for p in parts if p)
        if text.strip():
            out.append(text)
    return out


def flagged_categories(moderator: Moderator, texts: list[str]) -> list[str]:
    """The categories flagged in any of the texts, in first-seen order (empty: all clean)."""
    if not texts:
        return []
    seen: dict[str, None] = {}
    for result in moderator.moderate(texts):
        if result.flagged:
            seen.update(dict.fromkeys(result.flagged_categories))
    return list(seen)


def check_input(moderator: Moderator, messages: Sequence[dict[str, Any]]) -> None:
    """Raise 400 ``content_policy_violation`` when any message is flagged."""
    categories = flagged_categories(moderator, message_texts(messages))
    if categories:
        raise InvalidRequest(
            "Your request was rejected by this server's content policy: the messages were flagged "
            f"for {', '.join(categories)}. Change the messages and try again.",
            param="messages",
            code=POLICY_CODE,
        )


def output_text(content: str | None, tool_calls: Any = None, function_call: Any = None) -> str:
    """The text of a generated choice that moderation reads."""
    parts = [content or ""]
    for call in tool_calls or []:
        parts.append(str((call.get("function") or {}).get("arguments") or ""))
    if isinstance(function_call, dict):
        parts.append(str(function_call.get("arguments") or ""))
    return "\n".join(p for p in parts if p)


def output_flagged(moderator: Moderator, text: str) -> bool:
    return bool(text.strip()) and bool(flagged_categories(moderator, [text]))


@dataclass
class _Choice:
    held: list[ChoiceDelta] = field(default_factory=list)
    pending: str = ""  # text of the held deltas
    released_tail: str = ""  # the end of what the client already has
    filtered: bool = False


async def filter_stream(
    deltas: AsyncIterator[ChoiceDelta], moderator: Moderator, *, window: int = DEFAULT_WINDOW
) -> AsyncIterator[ChoiceDelta]:
    """Hold each choice's content back, moderate it window by window, release it when clean."""
    choices: dict[int, _Choice] = {}

    async def clean(state: _Choice) -> bool:
        text = state.released_tail + state.pending
        return not await asyncio.to_thread(output_flagged, moderator, text)

    def release(state: _Choice) -> list[ChoiceDelta]:
        out, state.held = state.held, []
        state.released_tail = (state.released_tail + state.pending)[-OVERLAP:]
        state.pending = ""
        return out

    async for d in deltas:
        state = choices.setdefault(d.index, _Choice())
        if state.filtered:
            continue  # generated after the flag: discarded (still billed)
        text = output_text(d.content, d.tool_calls, d.function_call)
        final = d.finish_reason is not None
        if not text and not state.held and not final:
            yield d  # the role delta, an empty content delta
            continue
        state.held.append(d)
        state.pending += text
        if len(state.pending) < window and not final:
            continue
        if await clean(state):
            for held in release(state):
                yield held
            continue
        state.filtered = True
        state.held, state.pending = [], ""
        yield ChoiceDelta(d.index, finish_reason=CONTENT_FILTER)
