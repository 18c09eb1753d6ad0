"""Eval data: JSONL lines of ``{"item": {...}, "sample": {...}?}`` (or bare item objects), and a
small JSON-schema check of items against the eval's ``item_schema``.

The schema check covers what item schemas use in practice — ``type``, ``properties``,
``required``, ``items``, ``enum`` — and ignores the rest of JSON Schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from afinar.errors import InvalidRequest

MAX_ITEMS = 10_000

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


@dataclass(frozen=True)
class Row:
    item: dict[str, Any]
    sample: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"item": self.item}
        if self.sample is not None:
            out["sample"] = self.sample
        return out

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Row:
        return Row(raw["item"], raw.get("sample"))


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
