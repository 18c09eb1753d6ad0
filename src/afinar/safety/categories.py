"""OpenAI's moderation categories, spelled exactly as on the wire (contract §1.7)."""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

# Categories that text-only (``text-moderation-*``) models leave out of their results.
OMNI_ONLY: frozenset[str] = frozenset({"illicit", "illicit/violent"})


def parent(category: str) -> str | None:
    """``"hate/threatening"`` → ``"hate"``; a top-level category has no parent."""
    head, sep, _ = category.partition("/")
    return head if sep else None


def check_categories(names: list[str] | tuple[str, ...] | set[str] | frozenset[str]) -> None:
    unknown = sorted(set(names) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown moderation categories: {', '.join(unknown)}")
