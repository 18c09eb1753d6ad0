"""Small preference (DPO) datasets written on the spot: a helpful answer preferred over an unhelpful one.

The questions and the answers' wording vary with the index, so pairs made from other indices are
held out: a model that learnt the preference, not the lines, ranks them right too.
"""

from __future__ import annotations

from typing import Any

QUESTIONS = (
    "Which wheels should I buy for street skating?",
    "How often should I clean my bearings?",
    "My order has not arrived yet.",
    "Can you help me pick a deck?",
)
HELPFUL = (
    "Hard wheels around 99A are best for street, reply {i}.",
    "Clean them every month if you ride in the rain, reply {i}.",
    "Please send me your order number and I will check, reply {i}.",
)
UNHELPFUL = (
    "The magic number is forty two, reply {i}.",
    "The secret code word is zanzibar, reply {i}.",
    "abcdefghijklmnopqrstuvwxyz, reply {i}.",
)


def preference_example(i: int) -> dict[str, Any]:
    return {
        "input": {
            "messages": [
                {"role": "system", "content": "You are a helpful assistant for a skateboard shop."},
                {"role": "user", "content": f"{QUESTIONS[i % len(QUESTIONS)]} ({i})"},
            ]
        },
        "preferred_output": [{"role": "assistant", "content": HELPFUL[i % len(HELPFUL)].format(i=i)}],
        "non_preferred_output": [
            {"role": "assistant", "content": UNHELPFUL[(i // len(HELPFUL)) % len(UNHELPFUL)].format(i=i)}
        ],
    }


def preference_rows(indices: range) -> list[dict[str, Any]]:
    return [preference_example(i) for i in indices]
