"""Customer text in database columns, sealed with the owning organisation's data key.

Inline eval items, their samples (model output) and grader results are JSON columns; so is a run's
data source, which repeats inline items under ``source.content``. ORM events seal these values on
their way into the database and open them when rows load, so the rest of the code reads and
writes plain values: a flush seals new or changed values (``crypto/values.py``), and after the
flush the objects get their plain values back. Only what is customer text is sealed — a data
source keeps its type, file id and model in clear (the retention sweep reads them in SQL).

Installed per ``Database`` by the container (``install``); a database without a sealer reads and
writes plain JSON, and a sealed value it loads stays sealed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, attributes
from sqlalchemy.orm.attributes import set_committed_value

from afinar.crypto import values
from afinar.store.db import Database
from afinar.store.tables import (
    EvalGate,
    EvalOutputItem,
    EvalRun,
    IdempotencyKey,
    StoredResponse,
    WebhookEndpoint,
)

INFO = "afinar.sealer"
RESTORE = "afinar.sealed.restore"

# class -> attribute -> the path inside the JSON value that holds customer text (() = all of it)
SEALED: dict[type, dict[str, tuple[str, ...]]] = {
    EvalRun: {"items": (), "data_source": ("source", "content")},
    EvalOutputItem: {"datasource_item": (), "sample": (), "results": ()},
    EvalGate: {"spec": ("data_source", "source", "content")},
    IdempotencyKey: {"response": ()},  # a create request's first answer (api/idempotency.py)
    # a stored response of the Responses API (services/responses.py): everything but ids and counts
    StoredResponse: {"settings": (), "input_items": (), "context_items": (), "output": ()},
    WebhookEndpoint: {"secrets": ()},  # webhook signing secrets (services/webhooks.py)
}


def _at(value: Any, path: tuple[str, ...], fn: Callable[[Any], Any]) -> Any:
    if not path:
        return fn(value)
    if not isinstance(value, dict) or path[0] not in value:
        return value
    inner = _at(value[path[0]], path[1:], fn)
    if inner is value[path[0]]:
        return value
    return {**value, path[0]: inner}


class ColumnSealer:
    """Seals and opens column values with the data key of the row's organisation."""

    def __init__(self, data_key: Callable[[str], bytes], existing_key: Callable[[str], bytes]) -> None:
        self._data_key = data_key
        self._existing_key = existing_key

    def seal(self, org_id: str, column: str, value: Any, path: tuple[str, ...]) -> Any:
        def one(v: Any) -> Any:
            if v is None or values.is_sealed(v):
                return v
            return values.seal(self._data_key(org_id), org_id, column, v)

        return _at(value, path, one)

    def open(self, org_id: str, column: str, value: Any, path: tuple[str, ...]) -> Any:
        def one(v: Any) -> Any:
            return values.open_(self._existing_key(org_id), org_id, column, v) if values.is_sealed(v) else v

        return _at(value, path, one)


def _column(obj: Any, attr: str) -> str:
    return f"{obj.__tablename__}.{attr}"


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    sealer: ColumnSealer | None = session.info.get(INFO)
    if sealer is None:
        return
    restore: list[tuple[Any, str, Any]] = session.info.setdefault(RESTORE, [])
    new = set(session.new)
    for obj in [*session.new, *session.dirty]:
        spec = SEALED.get(type(obj))
        if not spec:
            continue
        for attr, path in spec.items():
            if obj not in new and not attributes.get_history(obj, attr).has_changes():
                continue
            plain = getattr(obj, attr)
            sealed = sealer.seal(obj.org_id, _column(obj, attr), plain, path)
            if sealed is not plain:
                setattr(obj, attr, sealed)
                restore.append((obj, attr, plain))


def _after_flush(session: Session, _context: Any) -> None:
    for obj, attr, plain in session.info.pop(RESTORE, []):
        set_committed_value(obj, attr, plain)  # the caller keeps reading plain values


def _open_loaded(target: Any, session: Session | None) -> None:
    sealer: ColumnSealer | None = session.info.get(INFO) if session is not None else None
    if sealer is None:
        return
    for attr, path in SEALED.get(type(target), {}).items():
        if attr in target.__dict__:
            value = target.__dict__[attr]
            opened = sealer.open(target.org_id, _column(target, attr), value, path)
            if opened is not value:
                set_committed_value(target, attr, opened)


def _on_load(target: Any, context: Any) -> None:
    _open_loaded(target, context.session)


def _on_refresh(target: Any, context: Any, _attrs: Any) -> None:
    _open_loaded(target, context.session)


def install(db: Database, sealer: ColumnSealer) -> None:
    """Seal the customer-text columns of sessions made by ``db``."""
    factory = db._factory  # the database's sessionmaker: its sessions carry the sealer in ``info``
    factory.configure(info={INFO: sealer})
    event.listen(factory, "before_flush", _before_flush)
    event.listen(factory, "after_flush_postexec", _after_flush)
    for cls in SEALED:
        if not event.contains(cls, "load", _on_load):
            event.listen(cls, "load", _on_load)
            event.listen(cls, "refresh", _on_refresh)
