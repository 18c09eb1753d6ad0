"""A preference (DPO) line as the two chat conversations training scores.

A line ``{"input": {"messages", "tools"?}, "preferred_output": [answer], "non_preferred_output":
[answer]}`` (or the ``_completion`` spellings, contract §3.2) becomes two conversations that share
the prompt: ``input.messages`` followed by the preferred answer, and followed by the non-preferred
one. Assistant turns inside the prompt get ``weight`` 0, so only the final answer is labelled (its
content and end-of-turn token, by the base model's own chat template in ``encoding.py``).

Validation counts the tokens of both conversations and the trainer encodes the same two, so an
estimate's billable tokens equal the job's ``trained_tokens`` (``prompt + preferred`` plus
``prompt + non-preferred``, after truncation, per epoch).
"""

from __future__ import annotations

from typing import Any

OUTPUT_KEYS = {
    "preferred": ("preferred_output", "preferred_completion"),
    "non_preferred": ("non_preferred_output", "non_preferred_completion"),
}


def output_message(obj: dict[str, Any], side: str) -> Any:
    """The single answer of ``side`` ("preferred" or "non_preferred"), under either spelling."""
    for key in OUTPUT_KEYS[side]:
        if key in obj:
            return obj[key][0]
    raise KeyError(OUTPUT_KEYS[side][0])


def preference_conversations(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(prompt + preferred answer, prompt + non-preferred answer), each ``{"messages", "tools"}``
    as ``encode_chat`` takes it. The line must have passed ``checks.check_preference``."""
    inp = obj["input"]
    prompt = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in inp["messages"]]
    tools = inp.get("tools")
    return (
        {"messages": [*prompt, output_message(obj, "preferred")], "tools": tools},
        {"messages": [*prompt, output_message(obj, "non_preferred")], "tools": tools},
    )
