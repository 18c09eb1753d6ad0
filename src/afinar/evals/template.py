"""``{{item.field}}`` / ``{{sample.output_text}}`` placeholders, as OpenAI's evals write them."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from afinar.errors import InvalidRequest

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.\-]*)\s*\}\}")
NAMESPACES = ("item", "sample")


class TemplateError(ValueError):
    """A placeholder names something the item or sample does not have."""


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def check(text: str, param: str, *, allow_sample: bool = True) -> None:
    """Refuse placeholders outside the ``item``/``sample`` namespaces (a 400 at creation time)."""
    for ref in placeholders(text):
        ns = ref.split(".", 1)[0]
        if ns not in NAMESPACES or (ns == "sample" and not allow_sample):
            allowed = "'item'" + (" or 'sample'" if allow_sample else "")
            raise InvalidRequest(
                f"Unknown variable '{{{{{ref}}}}}' in {param}: use the {allowed} namespace.", param=param
            )


def lookup(ref: str, context: dict[str, Any]) -> Any:
    value: Any = context
    for part in ref.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise TemplateError(f"'{{{{{ref}}}}}' is not in the item or sample")
    return value


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def render(text: str, context: dict[str, Any]) -> str:
    """Replace every placeholder; a whole-string placeholder of a non-string renders as JSON."""
    return PLACEHOLDER.sub(lambda m: as_text(lookup(m.group(1), context)), text)


def context(item: dict[str, Any], sample: dict[str, Any] | None) -> dict[str, Any]:
    """The namespaces graders see: ``item`` and ``sample`` (``output_text``, ``output_json``)."""
    ctx: dict[str, Any] = {"item": item}
    if sample is not None:
        s = dict(sample)
        text = s.get("output_text")
        if "output_json" not in s and isinstance(text, str):
            with contextlib.suppress(ValueError):
                s["output_json"] = json.loads(text)
        ctx["sample"] = s
    return ctx
