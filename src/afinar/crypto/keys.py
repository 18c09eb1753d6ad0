"""The master key and per-organisation data keys (envelope encryption).

Each organisation's data key is 32 random bytes, stored only wrapped: AES-256-GCM under the master
key, with the organisation id as associated data (a wrapped key moved to another organisation's
row does not unwrap). The master key comes from configuration (``AFINAR_MASTER_KEY`` or
``AFINAR_MASTER_KEY_FILE``); without either, one is generated once into ``<data_dir>/master.key``.
Destroying an organisation's wrapped key makes everything encrypted under it unreadable.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from afinar.config import Settings

log = logging.getLogger("afinar.crypto")

KEY_BYTES = 32
NONCE_BYTES = 12
WRAP_VERSION = b"\x01"
MASTER_KEY_FILE = "master.key"


class KeyUnavailable(Exception):
    """A key cannot be used: malformed, or it does not unwrap under this master key."""


class OrgKeyDestroyed(KeyUnavailable):
    """The organisation's data key was destroyed (the organisation was deleted)."""


def _decode_key(text: str, origin: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyUnavailable(f"{origin} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyUnavailable(f"{origin} must be the base64 of {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def generate_key() -> bytes:
    return os.urandom(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def load_master_key(settings: Settings) -> bytes:
    """The master key from configuration, or ``<data_dir>/master.key`` (created once, mode 0600)."""
    if settings.master_key.get_secret_value():
        return _decode_key(settings.master_key.get_secret_value(), "AFINAR_MASTER_KEY")
    if settings.master_key_file is not None:
        return _decode_key(Path(settings.master_key_file).read_text(), str(settings.master_key_file))
    path = settings.data_dir / MASTER_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(encode_key(generate_key()) + "\n")
                f.flush()
                os.fsync(f.fileno())
            log.warning(
                "generated a master key in %s; in production keep the master key outside the data "
                "directory (AFINAR_MASTER_KEY or AFINAR_MASTER_KEY_FILE)",
                path,
            )
    return _decode_key(path.read_text(), str(path))


def wrap(master: bytes, org_id: str, data_key: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(master).encrypt(nonce, data_key, org_id.encode())
    return base64.b64encode(WRAP_VERSION + nonce + sealed).decode()


def unwrap(master: bytes, org_id: str, wrapped: str) -> bytes:
    raw = base64.b64decode(wrapped)
    if raw[:1] != WRAP_VERSION:
        raise KeyUnavailable(f"unknown wrapped-key format for organisation {org_id}")
    nonce, sealed = raw[1 : 1 + NONCE_BYTES], raw[1 + NONCE_BYTES :]
    try:
        return AESGCM(master).decrypt(nonce, sealed, org_id.encode())
    except InvalidTag:
        raise KeyUnavailable(
            f"the data key of organisation {org_id} does not unwrap: is this the right master key?"
        ) from None


class KeyRing:
    """Unwrapped data keys per organisation, created lazily and cached for the process.

    ``load(org_id)`` returns the stored wrapped key, ``""`` once it was destroyed, or None when
    there is none yet; ``insert(org_id, wrapped)`` stores one and returns False when another
    writer stored one first (the caller then re-reads) or the organisation does not exist.
    """

    def __init__(
        self,
        master: bytes,
        load: Callable[[str], str | None],
        insert: Callable[[str, str], bool],
    ) -> None:
        self._master = master
        self._load = load
        self._insert = insert
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def data_key(self, org_id: str, *, create: bool = True) -> bytes:
        with self._lock:
            key = self._cache.get(org_id)
            if key is not None:
                return key
            wrapped = self._load(org_id)
            if wrapped == "":
                raise OrgKeyDestroyed(f"the data key of organisation {org_id} was destroyed")
            if wrapped is None:
                if not create:
                    raise OrgKeyDestroyed(f"organisation {org_id} has no data key")
                self._insert(org_id, wrap(self._master, org_id, generate_key()))
                wrapped = self._load(org_id)  # ours, or the winner's when another writer was first
                if not wrapped:
                    raise KeyUnavailable(f"organisation {org_id} has no data key and none can be made")
            key = unwrap(self._master, org_id, wrapped)
            self._cache[org_id] = key
            return key

    def existing_key(self, org_id: str) -> bytes:
        """The data key for reading: never creates one (a destroyed key stays destroyed)."""
        return self.data_key(org_id, create=False)

    def forget(self, org_id: str) -> None:
        with self._lock:
            self._cache.pop(org_id, None)
