"""GET /health (liveness) and GET /ready (readiness: database, blob store, ML stack).

Both answer without authentication; /ready probes the real SQLite database and the real local
blob store, and says 503, in OpenAI's error envelope, which of them fails and why.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from afinar.blobs.local import PROBE_PREFIX
from afinar.server import create_app


def test_ready_probes_the_database_and_the_blob_store(http: Any, container: Any) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    r = http.get("/ready")  # no Authorization header
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "ready",
        "checks": {
            "database": {"status": "ok"},
            "blob_store": {"status": "ok"},
            "ml_stack": {"status": "ok"},
        },
    }
    root = container.blobs.root
    assert [p for p in root.rglob("*") if p.is_file()] == []  # the probe object is gone
    assert (root / PROBE_PREFIX).is_dir()  # it went under the reserved prefix, no organisation's


def test_a_broken_blob_store_is_not_ready(http: Any, container: Any) -> None:
    root: Path = container.blobs.root
    shutil.rmtree(root)
    root.write_bytes(b"not a directory")  # the store's root is unusable
    r = http.get("/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["error"]["type"] == "server_error" and body["error"]["code"] == "blob_store_unavailable"
    assert body["error"]["message"].startswith("Not ready: blob_store: ")
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == {"status": "ok"}
    assert body["checks"]["blob_store"]["status"] == "error"
    assert str(root) not in r.text  # no path in the answer
    assert r.headers["retry-after"] == "5"


def test_a_broken_database_is_not_ready(http: Any, container: Any, settings: Any) -> None:
    db_file = Path(settings.resolved_database_url().split("///", 1)[1])
    container.db.dispose()  # pooled connections closed: the next one opens the path again
    db_file.unlink()
    db_file.mkdir()  # a directory where the database file was
    r = http.get("/ready")
    assert r.status_code == 503
    body = r.json()
    assert body["error"]["code"] == "database_unavailable"
    assert body["checks"]["database"]["status"] == "error"
    assert "OperationalError" in body["checks"]["database"]["reason"]
    assert body["checks"]["blob_store"] == {"status": "ok"}
    assert str(db_file) not in r.text


def test_ready_answers_while_the_ml_stack_loads_and_says_so(container: Any) -> None:
    gate = threading.Event()
    with TestClient(create_app(container, ready=gate)) as http:
        r = http.get("/ready")  # not held by the gate, unlike every other route
        assert r.status_code == 503
        assert r.json()["checks"]["ml_stack"] == {"status": "loading", "reason": "importing the ML stack"}
        assert r.json()["error"]["code"] == "ml_stack_unavailable"
        assert http.get("/health").status_code == 200
        gate.set()
        assert http.get("/ready").status_code == 200
