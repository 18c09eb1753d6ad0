"""Structural checks for one parsed training example (a chat line or a preference line).

Each check returns every problem it finds, each as a full sentence with a 1-based
"Example N[, message M]" locator (N is the line number in the file). Error codes are stable
strings; ``validation.job_failure`` maps them onto the OpenAI job error codes.

Message keys are checked per role, the way OpenAI's discriminated message schema does it:
``weight`` on a user message is reported as an extra key, just like ``weight`` on the example.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from afinar.datasets.preference import OUTPUT_KEYS, preference_conversations
from afinar.datasets.report import Problem

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_BASE_KEYS = frozenset({"role", "content", "name"})
ROLE_KEYS: dict[str, frozenset[str]] = {
    "system": _BASE_KEYS,
    "developer": _BASE_KEYS,
    "user": _BASE_KEYS,
    "assistant": _BASE_KEYS | {"tool_calls", "function_call", "weight", "refusal"},
    "tool": _BASE_KEYS | {"tool_call_id"},
    "function": _BASE_KEYS,
}
CHAT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
INPUT_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
PREFERENCE_KEYS = frozenset({"input", *OUTPUT_KEYS["preferred"], *OUTPUT_KEYS["non_preferred"]})
UNSUPPORTED_PARTS = frozenset({"image_url", "input_audio", "file", "input_image", "input_file"})

# Codes whose job error is "a file format error" (invalid_file_format) rather than
# "an invalid training file" (invalid_training_file); see validation.job_failure.
FILE_FORMAT_CODES = frozenset({"extra_key", "invalid_token"})


@dataclass
class CheckedExample:
    """Problems of one example, and what the validator needs from it when it has none."""

    problems: list[Problem] = field(default_factory=list)
    # What encode_chat renders and counts (empty on errors): the conversation of a chat line, the
    # two conversations (prompt + preferred, prompt + non-preferred) of a preference line.
    conversations: list[dict[str, Any]] = field(default_factory=list)
    n_messages: int = 0
    has_system: bool = False
    has_user: bool = False
    has_trained_assistant: bool = False


def classify(obj: dict[str, Any]) -> str | None:
    """The format a parsed line is in ("chat", "preference"), by the keys it carries; or None."""
    if "messages" in obj:
        return "chat"
    if PREFERENCE_KEYS & obj.keys():
        return "preference"
    return None


class _Sink:
    def __init__(self, n: int) -> None:
        self.n = n
        self.problems: list[Problem] = []

    def add(self, code: str, message: str, message_index: int | None = None) -> None:
        self.problems.append(Problem(self.n, message_index, code, message))


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


def _content_texts(content: Any, where: str, index: int | None, sink: _Sink) -> list[str] | None:
    """The text strings of a content value, or None (after reporting) when it is not text."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list) or not content:
        sink.add(
            "invalid_content", f"{where}: content must be a string or a non-empty list of text parts.", index
        )
        return None
    texts: list[str] = []
    ok = True
    for part in content:
        ptype = part.get("type") if isinstance(part, dict) else None
        if not isinstance(ptype, str):
            sink.add("invalid_content", f"{where}: a content part must be an object with a 'type'.", index)
            ok = False
        elif ptype in UNSUPPORTED_PARTS:
            sink.add(
                "unsupported_content_part",
                f"{where}: content part type '{ptype}' is not supported; Afinar fine-tunes on text only.",
                index,
            )
            ok = False
        elif ptype in ("text", "refusal") and isinstance(part.get(ptype), str):
            texts.append(part[ptype])
        else:
            sink.add("invalid_content", f"{where}: content part '{ptype}' is not a text part.", index)
            ok = False
    return texts if ok else None


def _check_arguments(raw: Any, where: str, index: int | None, sink: _Sink) -> None:
    if not isinstance(raw, str):
        sink.add("invalid_tool_arguments", f"{where}: function.arguments must be a JSON string.", index)
        return
    try:
        json.loads(raw)
    except ValueError as exc:
        sink.add("invalid_tool_arguments", f"{where}: function.arguments is not valid JSON ({exc}).", index)


def _call_texts(msg: dict[str, Any], where: str, index: int | None, sink: _Sink) -> tuple[list[str], bool]:
    """Validate tool_calls / function_call; return their rendered strings and whether any exist."""
    texts: list[str] = []
    calls = msg.get("tool_calls")
    present = False
    if calls is not None:
        if not isinstance(calls, list):
            sink.add("invalid_tool_call", f"{where}: tool_calls must be a list.", index)
        for k, call in enumerate(calls if isinstance(calls, list) else [], start=1):
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                sink.add("invalid_tool_call", f"{where}: tool call {k} needs a function with a name.", index)
                continue
            if call.get("type", "function") != "function":
                sink.add("invalid_tool_call", f"{where}: tool call {k} must have type 'function'.", index)
            present = True
            _check_arguments(fn.get("arguments"), f"{where}: tool call {k}", index, sink)
            texts += [fn["name"], fn["arguments"] if isinstance(fn.get("arguments"), str) else ""]
    fc = msg.get("function_call")
    if fc is not None:
        if not isinstance(fc, dict) or not isinstance(fc.get("name"), str) or not fc["name"]:
            sink.add("invalid_tool_call", f"{where}: function_call needs a name.", index)
        else:
            present = True
            _check_arguments(fc.get("arguments"), f"{where}: function_call", index, sink)
            texts += [fc["name"], fc["arguments"] if isinstance(fc.get("arguments"), str) else ""]
    return texts, present


def check_message(
    msg: Any, where: str, index: int | None, sink: _Sink, tokens: re.Pattern[str] | None
) -> str | None:
    """Check one message; return its role when it is usable, None otherwise."""
    before = len(sink.problems)
    if not isinstance(msg, dict):
        sink.add("invalid_message", f"{where}: a message must be a JSON object, got {_kind(msg)}.", index)
        return None
    role = msg.get("role")
    if role is None:
        sink.add("missing_role", f"{where}: 'role' is missing.", index)
        return None
    if role not in ROLES:
        sink.add(
            "unrecognized_role",
            f"{where}: unrecognized role {json.dumps(role)}; expected one of {', '.join(ROLES)}.",
            index,
        )
        return None
    for key in msg:
        if key not in ROLE_KEYS[role]:
            sink.add("extra_key", f'{where} contains an extra "{key}".', index)
    texts, has_calls = _call_texts(msg, where, index, sink) if role == "assistant" else ([], False)
    content = msg.get("content")
    if content is None:
        if not (role == "assistant" and has_calls):
            sink.add(
                "missing_content",
                f"{where}: 'content' is missing (it may be null only on an assistant message "
                "with tool_calls or function_call).",
                index,
            )
    else:
        texts += _content_texts(content, where, index, sink) or []
    if "weight" in msg and role == "assistant":
        weight = msg["weight"]
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight not in (0, 1):
            sink.add("invalid_weight", f"{where}: 'weight' must be 0 or 1, got {json.dumps(weight)}.", index)
    if role == "tool" and not (isinstance(msg.get("tool_call_id"), str) and msg["tool_call_id"]):
        sink.add("missing_tool_call_id", f"{where}: a tool message needs a 'tool_call_id'.", index)
    if role == "function" and not (isinstance(msg.get("name"), str) and msg["name"]):
        sink.add("missing_name", f"{where}: a function message needs a 'name'.", index)
    if "name" in msg and not isinstance(msg["name"], str):
        sink.add("invalid_message", f"{where}: 'name' must be a string.", index)
    if tokens is not None:
        for text in texts:
            found = tokens.search(text)
            if found:
                sink.add("invalid_token", f"{where} contains an invalid token: {found.group(0)}.", index)
                break
    return role if len(sink.problems) == before else None


def _tool_spec(tool: dict[str, Any]) -> dict[str, Any]:
    spec = tool.get("function", tool)
    return spec if isinstance(spec, dict) else {}


def _check_tools(obj: dict[str, Any], where: str, sink: _Sink) -> None:
    tools = obj.get("tools")
    if tools is not None and not (
        isinstance(tools, list)
        and all(isinstance(t, dict) and isinstance(_tool_spec(t).get("name"), str) for t in tools)
    ):
        sink.add("invalid_tools", f"{where}: 'tools' must be a list of function tool definitions.")
    functions = obj.get("functions")
    if functions is not None and not (
        isinstance(functions, list)
        and 1 <= len(functions) <= 128
        and all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in functions)
    ):
        sink.add("invalid_tools", f"{where}: 'functions' must be a list of 1 to 128 function definitions.")
    if "parallel_tool_calls" in obj and not isinstance(obj["parallel_tool_calls"], bool):
        sink.add("invalid_tools", f"{where}: 'parallel_tool_calls' must be true or false.")


def _check_messages(
    messages: Any, n: int, sink: _Sink, tokens: re.Pattern[str] | None, result: CheckedExample
) -> None:
    if not isinstance(messages, list) or not messages:
        sink.add("missing_messages", f"Example {n}: 'messages' must be a non-empty list.")
        return
    result.n_messages = len(messages)
    for m, msg in enumerate(messages, start=1):
        role = check_message(msg, f"Example {n}, message {m}", m, sink, tokens)
        result.has_system |= role in ("system", "developer")
        result.has_user |= role == "user"
        if role == "assistant" and msg.get("weight", 1) != 0:
            result.has_trained_assistant = True


def check_chat(obj: dict[str, Any], n: int, tokens: re.Pattern[str] | None = None) -> CheckedExample:
    sink = _Sink(n)
    result = CheckedExample()
    if "messages" not in obj:
        sink.add("missing_messages", f"Example {n} is missing key 'messages'.")
    for key in obj:
        if key not in CHAT_KEYS:
            sink.add("extra_key", f'Example {n} contains an extra "{key}".')
    if "messages" in obj:
        _check_messages(obj["messages"], n, sink, tokens, result)
        roles = [m.get("role") for m in obj["messages"] if isinstance(m, dict)] if result.n_messages else []
        if result.n_messages and "assistant" not in roles:
            sink.add("missing_assistant_message", f"Example {n} has no assistant message.")
    _check_tools(obj, f"Example {n}", sink)
    result.problems = sink.problems
    if not sink.problems:
        result.conversations = [{"messages": obj["messages"], "tools": obj.get("tools")}]
    return result


def _output(obj: dict[str, Any], side: str, n: int, sink: _Sink, tokens: re.Pattern[str] | None) -> Any:
    present = [k for k in OUTPUT_KEYS[side] if k in obj]
    if not present:
        sink.add("missing_key", f"Example {n} is missing key '{OUTPUT_KEYS[side][0]}'.")
        return None
    if len(present) > 1:
        sink.add(
            "invalid_preference_output", f"Example {n}: give '{present[0]}' or '{present[1]}', not both."
        )
        return None
    key = present[0]
    value = obj[key]
    if not isinstance(value, list) or len(value) != 1:
        sink.add(
            "invalid_preference_output", f"Example {n}: '{key}' must hold exactly one assistant message."
        )
        return None
    where = f"Example {n}, {key}"
    role = check_message(value[0], where, None, sink, tokens)
    if role is not None and role != "assistant":
        sink.add(
            "invalid_preference_output", f"{where}: the message must have role 'assistant', not '{role}'."
        )
        return None
    return value[0] if role else None


def check_preference(obj: dict[str, Any], n: int, tokens: re.Pattern[str] | None = None) -> CheckedExample:
    sink = _Sink(n)
    result = CheckedExample()
    inp = obj.get("input")
    if inp is None:
        sink.add("missing_key", f"Example {n} is missing key 'input'.")
    for key in obj:
        if key not in PREFERENCE_KEYS:
            sink.add("extra_key", f'Example {n} contains an extra "{key}".')
    if inp is not None and not isinstance(inp, dict):
        sink.add("missing_messages", f"Example {n}: 'input' must be an object with 'messages'.")
    elif isinstance(inp, dict):
        for key in inp:
            if key not in INPUT_KEYS:
                sink.add("extra_key", f'Example {n}, input contains an extra "{key}".')
        if "messages" not in inp:
            sink.add("missing_messages", f"Example {n}, input is missing key 'messages'.")
        else:
            _check_messages(inp["messages"], n, sink, tokens, result)
        _check_tools(inp, f"Example {n}, input", sink)
    preferred = _output(obj, "preferred", n, sink, tokens)
    _output(obj, "non_preferred", n, sink, tokens)
    result.problems = sink.problems
    if not sink.problems and isinstance(inp, dict):
        # Both answers after the shared prompt are trained on (DPO scores each), so both count.
        result.conversations = list(preference_conversations(obj))
        result.n_messages += 1
        result.has_trained_assistant = preferred.get("weight", 1) != 0
    return result
