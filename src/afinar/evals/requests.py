"""Request checks of the evals API that need nothing but the request: ids, metadata, names, the
data source config, input messages, sampling parameters and gate rates (400s with ``param``)."""

from __future__ import annotations

import secrets
from typing import Any

from afinar.errors import InvalidRequest
from afinar.evals import criteria as crit
from afinar.evals import template as tpl

DEFAULT_MAX_COMPLETION_TOKENS = 256
SAMPLING_KEYS = ("temperature", "top_p", "seed", "max_completion_tokens")


def eval_id() -> str:
    return "eval_" + secrets.token_hex(16)


def run_id() -> str:
    return "evalrun_" + secrets.token_hex(16)


def output_item_id() -> str:
    return "outputitem_" + secrets.token_hex(16)


def check_limit(limit: int) -> None:
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")


def check_order(order: str) -> bool:
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
    return order == "desc"


def metadata(meta: Any) -> dict[str, str] | None:
    if meta is None:
        return None
    if (
        not isinstance(meta, dict)
        or len(meta) > 16
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
            for k, v in meta.items()
        )
    ):
        raise InvalidRequest(
            "metadata must be an object of at most 16 pairs: keys of at most 64 characters, string values of "
            "at most 512",
            param="metadata",
        )
    return dict(meta)


def name(raw: Any, default: str) -> str:
    if raw is None:
        return default
    if not isinstance(raw, str) or len(raw) > 256:
        raise InvalidRequest("name must be a string of at most 256 characters", param="name")
    return raw


def data_source_config(raw: Any) -> dict[str, Any]:
    """The stored config: OpenAI's echo shape (``type``, ``schema``) plus the item schema we check."""
    if not isinstance(raw, dict):
        raise InvalidRequest("Missing required parameter: 'data_source_config'.", param="data_source_config")
    kind = raw.get("type")
    if kind in ("logs", "stored_completions"):
        raise InvalidRequest(
            f"data_source_config type '{kind}' is not supported: this server keeps no completion logs. "
            "Use type 'custom' with an item_schema.",
            param="data_source_config.type",
        )
    if kind != "custom":
        raise InvalidRequest("data_source_config.type must be 'custom'.", param="data_source_config.type")
    item_schema = raw.get("item_schema")
    if not isinstance(item_schema, dict):
        raise InvalidRequest(
            "Missing required parameter: 'item_schema' (a JSON schema object).",
            param="data_source_config.item_schema",
        )
    include_sample = bool(raw.get("include_sample_schema", False))
    props: dict[str, Any] = {"item": item_schema}
    required = ["item"]
    if include_sample:
        props["sample"] = {
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "choices": {"type": "array"},
                "output_text": {"type": "string"},
                "output_json": {"type": "object"},
            },
            "required": ["model", "choices", "output_text"],
        }
        required.append("sample")
    return {
        "type": "custom",
        "schema": {"type": "object", "properties": props, "required": required},
        "include_sample_schema": include_sample,
    }


def uses_sample(criteria: list[dict[str, Any]]) -> bool:
    texts: list[str] = []
    for c in criteria:
        texts += (
            [c.get("input", "")] if isinstance(c.get("input"), str) else [m["content"] for m in c["input"]]
        )
        texts.append(c.get("reference", ""))
    return any(ref.startswith("sample") for t in texts for ref in tpl.placeholders(t))


def rate(raw: dict[str, Any], key: str, lo: float) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= 1:
        raise InvalidRequest(f"'{key}' must be a number between {lo:g} and 1.", param=f"eval_gate.{key}")
    return float(value)


def input_messages(raw: Any) -> dict[str, Any]:
    param = "data_source.input_messages"
    if not isinstance(raw, dict):
        raise InvalidRequest(
            "Missing required parameter: 'input_messages' (a template or an item reference).", param=param
        )
    if raw.get("type") == "template":
        msgs = crit.messages(raw.get("template"), f"{param}.template", allow_sample=False)
        return {"type": "template", "template": [{"type": "message", **m} for m in msgs]}
    if raw.get("type") == "item_reference":
        ref = raw.get("item_reference")
        if not isinstance(ref, str) or not ref.startswith("item."):
            raise InvalidRequest(
                "item_reference must name a field of the item, like 'item.messages'.",
                param=f"{param}.item_reference",
            )
        return {"type": "item_reference", "item_reference": ref}
    raise InvalidRequest("input_messages.type must be 'template' or 'item_reference'.", param=f"{param}.type")


def sampling(raw: Any) -> dict[str, Any]:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise InvalidRequest("sampling_params must be an object.", param="data_source.sampling_params")
    out: dict[str, Any] = {"max_completion_tokens": DEFAULT_MAX_COMPLETION_TOKENS}
    for key in SAMPLING_KEYS:
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"'{key}' must be a number.", param=f"data_source.sampling_params.{key}")
        out[key] = value
    if not 1 <= int(out["max_completion_tokens"]) <= 32768:
        raise InvalidRequest(
            "'max_completion_tokens' must be between 1 and 32768.",
            param="data_source.sampling_params.max_completion_tokens",
        )
    if "temperature" in out and not 0 <= out["temperature"] <= 2:
        raise InvalidRequest(
            "'temperature' must be between 0 and 2.", param="data_source.sampling_params.temperature"
        )
    return out
