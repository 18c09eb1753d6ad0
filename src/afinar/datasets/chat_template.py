"""Turn OpenAI-shaped chat messages into what a base model's chat template can render.

Training and serving both go through ``prepare_messages`` so that a tuned model sees at inference
exactly the text layout it was trained on. Templates that do not know tools (SmolLM2's ChatML, for
one) get tool definitions in the system message and tool calls as ``<tool_call>`` blocks in the
assistant text, the Hermes convention; ``parse_tool_calls`` reads them back when serving.
"""

from __future__ import annotations

import json
import re
from typing import Any

TOOL_CALL_RE = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


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
    """Split generated text into (remaining content, tool calls in OpenAI's shape)."""
    calls: list[dict[str, Any]] = []
    for i, match in enumerate(TOOL_CALL_RE.finditer(text)):
        try:
            obj = json.loads(match.group(1))
        except ValueError:
            continue
        if not isinstance(obj, dict) or "name" not in obj:
            continue
        args = obj.get("arguments", {})
        calls.append(
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {
                    "name": str(obj["name"]),
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
        )
    if not calls:
        return text, []
    return TOOL_CALL_RE.sub("", text).strip(), calls
