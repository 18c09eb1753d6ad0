"""Organisation data keys and row erasure on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from afinar.crypto.keys import KeyRing, KeyUnavailable, OrgKeyDestroyed, generate_key
from afinar.services.orgs import create_org
from afinar.store import erasure, org_keys
from afinar.store.tables import AuditLog, Organization, OrgKey

# ``db``: tests/support/db.py, on SQLite and on PostgreSQL.


def ring(db: Any, master: bytes) -> KeyRing:
    return KeyRing(master, lambda o: org_keys.load(db, o), lambda o, w: org_keys.insert(db, o, w))


def test_key_is_created_once_even_under_a_race(db: Any) -> None:
    org, _ = create_org(db, "acme")
    master = generate_key()
    rings = [ring(db, master) for _ in range(6)]
    got: list[bytes] = []
    start = threading.Barrier(len(rings))

    def first_use(r: KeyRing) -> None:
        start.wait()
        got.append(r.data_key(org.id))

    threads = [threading.Thread(target=first_use, args=(r,)) for r in rings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and len(set(got)) == 1
    with db.session() as s:
        row = s.scalar(select(OrgKey).where(OrgKey.org_id == org.id))
        assert row is not None and row.wrapped_key and got[0].hex() not in row.wrapped_key
    with pytest.raises(KeyUnavailable):  # another master key cannot unwrap it
        ring(db, generate_key()).data_key(org.id)
    with pytest.raises(KeyUnavailable):  # no key is ever made for an organisation that does not exist
        ring(db, master).data_key("org-nonexistent")


def test_destroyed_key_stays_destroyed_and_rows_go(db: Any) -> None:
    org, _ = create_org(db, "acme")
    other, _ = create_org(db, "other")
    master = generate_key()
    ring(db, master).data_key(org.id)
    org_keys.destroy(db, org.id)
    fresh = ring(db, master)
    with pytest.raises(OrgKeyDestroyed):
        fresh.data_key(org.id)  # not silently replaced by a new key while the org is being erased

    with db.session() as s:
        counts = erasure.delete_rows(s, org.id)
    assert counts["organizations"] == 1 and counts["audit_logs"] >= 1 and counts["api_keys"] == 1
    with db.session() as s:
        assert s.scalar(select(Organization).where(Organization.id == org.id)) is None
        assert s.scalar(select(OrgKey).where(OrgKey.org_id == org.id)) is None
        assert s.scalars(select(AuditLog).where(AuditLog.org_id == org.id)).all() == []
        assert s.scalars(select(AuditLog).where(AuditLog.org_id == other.id)).all() != []
    # the audit log is append-only again for everyone else
    with pytest.raises(DBAPIError), db.session() as s:
        s.execute(text("DELETE FROM audit_logs WHERE org_id = :o"), {"o": other.id})
