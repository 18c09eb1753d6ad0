"""Checks of the evals API that need nothing but the request (400s with ``param``): metadata, names,
the data source config, a run's data source (its shape, inline items, input messages, sampling
parameters), eval data lines and item schemas, gate rates, list parameters.

Pure: the API edge (``api/schemas/evals.py``) calls them to build the domain objects the services
receive, and the eval gate of a fine-tuning job (``services/eval_gates.py``) to check its spec.

The item schema check covers what item schemas use in practice — ``type``, ``properties``,
``required``, ``items``, ``enum`` — and ignores the rest of JSON Schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from afinar.domain.evals import MAX_ITEMS, DataSource, Row
from afinar.errors import InvalidRequest
from afinar.evals import criteria as crit
from afinar.evals import template as tpl

DEFAULT_MAX_COMPLETION_TOKENS = 256
SAMPLING_KEYS = ("temperature", "top_p", "seed", "max_completion_tokens")

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


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


# --- a run's data source ------------------------------------------------------------------------------


def data_source(raw: Any, *, model_required: bool = True) -> DataSource:
    """A run's ``data_source`` checked for shape (the model's existence, a file's items and the
    eval's item schema are the runs service's checks)."""
    if not isinstance(raw, dict):
        raise InvalidRequest("Missing required parameter: 'data_source'.", param="data_source")
    kind = raw.get("type")
    if kind == "responses":
        raise InvalidRequest(
            "data_source type 'responses' is not supported; use 'completions' or 'jsonl'.",
            param="data_source.type",
        )
    if kind not in ("jsonl", "completions"):
        raise InvalidRequest("data_source.type must be 'jsonl' or 'completions'.", param="data_source.type")
    source = raw.get("source")
    rows, file_id = _source(source)
    assert isinstance(source, dict)
    if kind == "jsonl":
        return DataSource(kind, source, rows, file_id)
    model: str | None = None
    if model_required or raw.get("model") is not None:
        model = raw.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("Missing required parameter: 'model'.", param="data_source.model")
    return DataSource(
        kind,
        source,
        rows,
        file_id,
        model=model,
        input_messages=input_messages(raw.get("input_messages")),
        sampling_params=sampling(raw.get("sampling_params")),
    )


def _source(source: Any) -> tuple[tuple[Row, ...] | None, str | None]:
    """(inline rows, or None) and (the data file's id, or None)."""
    if not isinstance(source, dict):
        raise InvalidRequest("Missing required parameter: 'data_source.source'.", param="data_source.source")
    kind = source.get("type")
    if kind == "file_content":
        content = source.get("content")
        if not isinstance(content, list) or not content:
            raise InvalidRequest("'content' must be a non-empty array.", param="data_source.source.content")
        if len(content) > MAX_ITEMS:
            raise InvalidRequest(
                f"A run may have at most {MAX_ITEMS} items.", param="data_source.source.content"
            )
        return tuple(row_of(x, f"content[{i}]") for i, x in enumerate(content)), None
    if kind == "file_id":
        fid = source.get("id")
        if not isinstance(fid, str):
            raise InvalidRequest(f"No such file: {fid}", param="data_source.source.id")
        return None, fid
    if kind == "stored_completions":
        raise InvalidRequest(
            "source type 'stored_completions' is not supported: this server keeps no completion logs.",
            param="data_source.source.type",
        )
    raise InvalidRequest(
        "data_source.source.type must be 'file_content' or 'file_id'.", param="data_source.source.type"
    )


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


# --- eval data: JSONL lines and item schemas ---------------------------------------------------------


def row_of(obj: Any, where: str) -> Row:
    """One line or one ``content`` entry: ``{"item": {...}, "sample"?}``, or a bare item object."""
    if not isinstance(obj, dict):
        raise InvalidRequest(f"{where} must be a JSON object.", param="data_source.source")
    if "item" in obj and set(obj) <= {"item", "sample"}:
        item, sample = obj["item"], obj.get("sample")
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}: 'item' must be an object.", param="data_source.source")
        if sample is not None and not isinstance(sample, dict):
            raise InvalidRequest(f"{where}: 'sample' must be an object.", param="data_source.source")
        return Row(item, sample)
    return Row(obj)


def parse_jsonl(lines: Iterable[bytes | str]) -> list[Row]:
    """An eval data file: lines of ``{"item": {...}, "sample": {...}?}`` (or bare item objects)."""
    rows: list[Row] = []
    for n, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"Line {n} of the data file is not valid JSON: {exc.msg}.", param="data_source.source"
            ) from None
        rows.append(row_of(obj, f"Line {n} of the data file"))
        if len(rows) > MAX_ITEMS:
            raise InvalidRequest(f"A run may have at most {MAX_ITEMS} items.", param="data_source.source")
    if not rows:
        raise InvalidRequest("The data source has no items.", param="data_source.source")
    return rows


def schema_errors(value: Any, schema: Any, path: str = "item") -> list[str]:
    """What is wrong with ``value`` under ``schema`` (empty when it conforms)."""
    if not isinstance(schema, dict):
        return []
    errors: list[str] = []
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
    if kinds:
        ok = False
        for k in kinds:
            types = _TYPES.get(k, ())
            if isinstance(value, bool) and k in ("integer", "number"):
                continue
            if isinstance(value, types):
                ok = True
        if not ok:
            return [f"{path} should be {' or '.join(kinds)}"]
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        errors.append(f"{path} should be one of {schema['enum']}")
    if isinstance(value, dict):
        for key in schema.get("required") or []:
            if key not in value:
                errors.append(f"{path}.{key} is required")
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                errors.extend(schema_errors(value[key], sub, f"{path}.{key}"))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errors.extend(schema_errors(v, schema["items"], f"{path}[{i}]"))
    return errors


def check_rows(rows: list[Row], item_schema: dict[str, Any]) -> None:
    """400 naming the first item that does not match the eval's item schema."""
    for i, row in enumerate(rows):
        problems = schema_errors(row.item, item_schema)
        if problems:
            raise InvalidRequest(
                f"Item {i} does not match the eval's item_schema: {'; '.join(problems[:3])}.",
                param="data_source.source",
            )
