"""Identifier shapes: file-, ftjob-, ftevent-, ftckpt_, chatcmpl-, and fine-tuned model names."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

_ALPHABET = string.ascii_letters + string.digits


def random_token(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_id(prefix: str, n: int = 24) -> str:
    """``new_id("file-")`` → ``file-`` followed by ``n`` base62 characters."""
    return prefix + random_token(n)


def file_id() -> str:
    return new_id("file-")


def job_id() -> str:
    return new_id("ftjob-")


def event_id() -> str:
    return new_id("ftevent-")


def checkpoint_id() -> str:
    return new_id("ftckpt_")


def completion_id() -> str:
    return new_id("chatcmpl-")


def org_id() -> str:
    return new_id("org-")


def fine_tuned_model_name(base: str, org_slug: str, suffix: str | None, short_id: str | None = None) -> str:
    """``ft:<base>:<org>:<suffix>:<8 chars>``; an absent suffix leaves the segment empty."""
    return f"ft:{base}:{org_slug}:{suffix or ''}:{short_id or random_token(8)}"


def checkpoint_model_name(model_name: str, step: int) -> str:
    return f"{model_name}:ckpt-step-{step}"


@dataclass(frozen=True)
class ModelRef:
    """A parsed model name: a base model, or a fine-tuned model (optionally one of its checkpoints)."""

    name: str
    base: str
    fine_tuned: str | None = None  # the ft: name without the checkpoint part
    step: int | None = None

    @property
    def is_base(self) -> bool:
        return self.fine_tuned is None


def parse_model_name(name: str) -> ModelRef:
    """Split ``ft:base:org:suffix:id[:ckpt-step-N]``; anything else is a base model name."""
    if not name.startswith("ft:"):
        return ModelRef(name=name, base=name)
    parts = name.split(":")
    step: int | None = None
    if len(parts) == 6 and parts[5].startswith("ckpt-step-"):
        try:
            step = int(parts[5].removeprefix("ckpt-step-"))
        except ValueError:
            return ModelRef(name=name, base=name)
        parts = parts[:5]
    if len(parts) != 5 or not parts[1] or not parts[4]:
        return ModelRef(name=name, base=name)
    return ModelRef(name=name, base=parts[1], fine_tuned=":".join(parts), step=step)
