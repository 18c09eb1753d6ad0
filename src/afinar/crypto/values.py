"""JSON values sealed with an organisation's data key, for customer text kept in database columns.

A sealed value is itself JSON, ``{"$afinar_sealed": 1, "v": base64(nonce | AES-GCM(json))}``, so
the column type does not change and rows written before sealing still read. The associated data
names the organisation and the column, so a value copied into another row's column or another
organisation's row does not open.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MARK = "$afinar_sealed"
NONCE = 12


class SealedValueError(Exception):
    """A sealed column value that does not open (wrong key, moved, or modified)."""


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and value.get(MARK) == 1 and isinstance(value.get("v"), str)


def _aad(org_id: str, column: str) -> bytes:
    return f"{org_id}\x00{column}".encode()


def seal(key: bytes, org_id: str, column: str, value: Any) -> dict[str, Any]:
    nonce = os.urandom(NONCE)
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    sealed = AESGCM(key).encrypt(nonce, data, _aad(org_id, column))
    return {MARK: 1, "v": base64.b64encode(nonce + sealed).decode()}


def open_(key: bytes, org_id: str, column: str, value: dict[str, Any]) -> Any:
    raw = base64.b64decode(value["v"])
    try:
        plain = AESGCM(key).decrypt(raw[:NONCE], raw[NONCE:], _aad(org_id, column))
    except InvalidTag:
        raise SealedValueError(f"the sealed {column} of organisation {org_id} does not open") from None
    return json.loads(plain)
