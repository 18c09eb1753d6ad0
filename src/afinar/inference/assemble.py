"""From generated text to OpenAI choice deltas: content, tool calls, logprobs, finish reason.

The same assembler serves streaming (text arrives in pieces) and non-streaming (all at once), so
both paths agree. With tool parsing on, text from the first ``<tool_call>`` on is held back; when
the choice ends, :func:`~afinar.datasets.chat_template.parse_tool_calls` turns it into tool calls
(finish reason ``tool_calls``), or it is released as plain content if it does not parse. A
reply cut by ``max_tokens`` keeps ``finish_reason: "length"``: its complete calls are still
returned, and an unfinished one stays in the content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from afinar.datasets.chat_template import parse_tool_calls
from afinar.ids import new_id
from afinar.inference.types import TokenLogprob

MARKER = "<tool_call>"


@dataclass
class ChoiceDelta:
    """One piece of one choice, in OpenAI's delta vocabulary (``None`` fields are absent)."""

    index: int
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None
    finish_reason: str | None = None
    logprobs: list[dict[str, Any]] | None = None

    def delta(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.role is not None:
            out["role"] = self.role
        if self.content is not None:
            out["content"] = self.content
        if self.tool_calls is not None:
            out["tool_calls"] = self.tool_calls
        if self.function_call is not None:
            out["function_call"] = self.function_call
        return out


@dataclass(frozen=True)
class ToolMode:
    parse: bool = False  # look for tool calls in the output
    legacy_functions: bool = False  # answer with ``function_call`` (deprecated ``functions`` API)
    parallel: bool = True  # several calls allowed


def _marker_prefix_len(text: str) -> int:
    for k in range(min(len(MARKER) - 1, len(text)), 0, -1):
        if MARKER.startswith(text[-k:]):
            return k
    return 0


class ChoiceAssembler:
    def __init__(self, index: int, mode: ToolMode, logprobs: bool) -> None:
        self.index = index
        self.mode = mode
        self.want_logprobs = logprobs
        self._tail = ""  # text that might be the start of MARKER
        self._held: str | None = None  # text from MARKER on
        self._logprobs: list[dict[str, Any]] = []

    def feed(self, text: str, logprobs: list[TokenLogprob] | None = None) -> list[ChoiceDelta]:
        if logprobs:
            self._logprobs += [lp.to_dict() for lp in logprobs]
        if not self.mode.parse:
            return [self._content(text)] if text else []
        if self._held is not None:
            self._held += text
            return []
        combined = self._tail + text
        at = combined.find(MARKER)
        if at >= 0:
            out, self._held, self._tail = combined[:at], combined[at:], ""
        else:
            keep = _marker_prefix_len(combined)
            out, self._tail = combined[: len(combined) - keep], combined[len(combined) - keep :]
        return [self._content(out)] if out else []

    def finish(self, reason: str) -> list[ChoiceDelta]:
        rest = self._tail + (self._held or "")
        self._tail, self._held = "", None
        out: list[ChoiceDelta] = []
        calls: list[dict[str, Any]] = []
        if self.mode.parse and MARKER in rest:
            remaining, calls = parse_tool_calls(rest)
            if calls:
                rest = remaining
                calls = calls if self.mode.parallel and not self.mode.legacy_functions else calls[:1]
        if rest:
            out.append(self._content(rest))
        if calls and self.mode.legacy_functions:
            fn = calls[0]["function"]
            out.append(
                ChoiceDelta(self.index, function_call={"name": fn["name"], "arguments": fn["arguments"]})
            )
            reason = reason if reason == "length" else "function_call"
        elif calls:
            for k, call in enumerate(calls):
                out.append(ChoiceDelta(self.index, tool_calls=[{**call, "index": k, "id": new_id("call_")}]))
            reason = reason if reason == "length" else "tool_calls"
        if self._logprobs:
            out.append(self._content(""))
        out.append(ChoiceDelta(self.index, finish_reason=reason))
        return out

    def _content(self, text: str) -> ChoiceDelta:
        logprobs = None
        if self.want_logprobs:
            logprobs, self._logprobs = self._logprobs, []
        return ChoiceDelta(self.index, content=text, logprobs=logprobs)


def merge(deltas: list[ChoiceDelta], want_logprobs: bool) -> dict[str, Any]:
    """Fold one choice's deltas into a non-streaming ``message`` + logprobs + finish reason."""
    content: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    function_call: dict[str, Any] | None = None
    logprobs: list[dict[str, Any]] = []
    finish_reason = None
    for d in deltas:
        if d.content:
            content.append(d.content)
        for call in d.tool_calls or []:
            tool_calls.append({k: v for k, v in call.items() if k != "index"})
        if d.function_call is not None:
            function_call = d.function_call
        logprobs += d.logprobs or []
        finish_reason = d.finish_reason or finish_reason
    text = "".join(content)
    return {
        "content": text if text or not (tool_calls or function_call) else None,
        "tool_calls": tool_calls or None,
        "function_call": function_call,
        "logprobs": logprobs if want_logprobs else None,
        "finish_reason": finish_reason,
    }
