"""Turn OpenAI-shaped chat messages into what a base model's chat template can render.

Training and serving both go through ``prepare_messages`` so that a tuned model sees at inference
exactly the text layout it was trained on. Templates that do not know tools (SmolLM2's ChatML, for
one) get tool definitions in the system message and tool calls as ``<tool_call>`` blocks in the
assistant text, the Hermes convention; ``parse_tool_calls`` reads them back when serving.
"""

from __future__ import annotations

import json
from typing import Any

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_DECODER = json.JSONDecoder()


def content_text(content: Any) -> str:
    """A message's content as plain text: a string, or the concatenated text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "") if p.get("type") == "text" else p.get("refusal", ""))
            for p in content
            if isinstance(p, dict)
        )
    return str(content)


def template_supports_tools(template: str | None) -> bool:
    return bool(template) and "tool_calls" in str(template)


def _tool_call_block(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    raw = fn.get("arguments") or "{}"
    try:
        arguments: Any = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        arguments = raw
    return "<tool_call>\n" + json.dumps({"name": fn.get("name"), "arguments": arguments}) + "\n</tool_call>"


def _tools_preamble(tools: list[dict[str, Any]]) -> str:
    specs = [t.get("function", t) for t in tools]
    return (
        "You may call one or more functions. Function signatures:\n<tools>\n"
        + "\n".join(json.dumps(s, sort_keys=True) for s in specs)
        + "\n</tools>\nTo call a function, answer with "
        '<tool_call>{"name": <name>, "arguments": <object>}</tool_call>.'
    )


def prepare_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, template: str | None
) -> list[dict[str, Any]]:
    """Flatten content parts to text and, for tool-less templates, inline tools and tool calls."""
    native_tools = template_supports_tools(template)
    out: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        role = "system" if role == "developer" else role
        if role == "function":
            role = "tool"
        text = content_text(msg.get("content"))
        item: dict[str, Any] = {"role": role, "content": text}
        calls = msg.get("tool_calls") or []
        if role == "assistant" and calls:
            if native_tools:
                item["tool_calls"] = calls
            else:
                blocks = "\n".join(_tool_call_block(c) for c in calls)
                item["content"] = f"{text}\n{blocks}" if text else blocks
        if role == "tool" and native_tools and msg.get("tool_call_id"):
            item["tool_call_id"] = msg["tool_call_id"]
        out.append(item)
    if tools and not native_tools:
        preamble = _tools_preamble(tools)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{preamble}"}
        else:
            out.insert(0, {"role": "system", "content": preamble})
    return out


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Split generated text into (remaining content, tool calls in OpenAI's shape).

    A call is ``<tool_call>`` + a JSON object with a ``name`` + ``</tool_call>`` (whitespace
    around the object allowed). The object is read with a JSON decoder, not a pattern, so
    arguments whose strings contain ``}`` or ``</tool_call>`` still parse; blocks that do not
    parse stay in the content.
    """
    calls: list[dict[str, Any]] = []
    kept: list[str] = []
    at = 0
    while (start := text.find(TOOL_CALL_OPEN, at)) >= 0:
        found = _read_call(text, start + len(TOOL_CALL_OPEN))
        if found is None:
            kept.append(text[at : start + len(TOOL_CALL_OPEN)])
            at = start + len(TOOL_CALL_OPEN)
            continue
        obj, end = found
        args = obj.get("arguments", {})
        calls.append(
            {
                "id": f"call_{len(calls)}",
                "type": "function",
                "function": {
                    "name": str(obj["name"]),
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
        )
        kept.append(text[at:start])
        at = end
    if not calls:
        return text, []
    kept.append(text[at:])
    return "".join(kept).strip(), calls


def _read_call(text: str, at: int) -> tuple[dict[str, Any], int] | None:
    """The call object after an opening ``<tool_call>`` and the index after its closing tag."""
    at = _skip_space(text, at)
    try:
        obj, at = _DECODER.raw_decode(text, at)
    except ValueError:
        return None
    at = _skip_space(text, at)
    if not isinstance(obj, dict) or "name" not in obj or not text.startswith(TOOL_CALL_CLOSE, at):
        return None
    return obj, at + len(TOOL_CALL_CLOSE)


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at
