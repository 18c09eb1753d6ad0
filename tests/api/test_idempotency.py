"""``Idempotency-Key`` on the create routes, through the official SDK: a retry never creates twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from afinar.clock import FixedClock
from afinar.store import idempotency as repo
from tests.support.data import chat_file
from tests.support.evals import EXACT_MATCH, ITEM_SCHEMA, jsonl_source, make_eval
from tests.support.tiny_model import TINY


def key(k: str) -> dict[str, Any]:
    return {"extra_headers": {"Idempotency-Key": k}}


@pytest.fixture
def train_id(client: openai.OpenAI, tmp_path: Path) -> str:
    return client.files.create(
        file=chat_file(tmp_path / "train.jsonl", 12).open("rb"), purpose="fine-tune"
    ).id


def test_same_key_and_body_replay_the_first_job(client: openai.OpenAI, train_id: str) -> None:
    first = client.fine_tuning.jobs.with_raw_response.create(
        model=TINY, training_file=train_id, suffix="a", **key("k1")
    )
    again = client.fine_tuning.jobs.with_raw_response.create(
        model=TINY, training_file=train_id, suffix="a", **key("k1")
    )
    assert first.headers.get("Idempotent-Replayed") is None
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.parse().id == first.parse().id
    assert again.http_response.json() == first.http_response.json()
    assert [j.id for j in client.fine_tuning.jobs.list()] == [first.parse().id]


def test_same_key_other_body_or_route_is_422_and_creates_nothing(
    client: openai.OpenAI, train_id: str
) -> None:
    job = client.fine_tuning.jobs.create(model=TINY, training_file=train_id, suffix="a", **key("k1"))
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=train_id, suffix="b", **key("k1"))
    assert err.value.code == "idempotency_key_reused" and err.value.type == "invalid_request_error"
    assert "different request parameters" in err.value.message and "'k1'" in err.value.message
    with pytest.raises(openai.UnprocessableEntityError) as err:
        make_eval(client, [EXACT_MATCH], **key("k1"))
    assert err.value.code == "idempotency_key_reused" and "/v1/fine_tuning/jobs" in err.value.message
    assert [j.id for j in client.fine_tuning.jobs.list()] == [job.id]
    assert list(client.evals.list()) == []


def test_without_a_key_every_request_creates(client: openai.OpenAI, train_id: str) -> None:
    a = client.fine_tuning.jobs.create(model=TINY, training_file=train_id)
    b = client.fine_tuning.jobs.create(model=TINY, training_file=train_id)
    assert a.id != b.id and len(list(client.fine_tuning.jobs.list())) == 2


def test_a_client_error_is_stored_and_replayed(client: openai.OpenAI, train_id: str) -> None:
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as err:
            client.fine_tuning.jobs.create(model="no-such-model", training_file=train_id, **key("bad"))
        assert err.value.param == "model"
    assert err.value.response.headers["Idempotent-Replayed"] == "true"
    with pytest.raises(
        openai.UnprocessableEntityError
    ):  # the key answered already: a new request needs a new key
        client.fine_tuning.jobs.create(model=TINY, training_file=train_id, **key("bad"))
    assert list(client.fine_tuning.jobs.list()) == []


def test_a_server_error_gives_the_key_back(app: Any, container: Any, settings: Any, train_id: str) -> None:
    from fastapi.testclient import TestClient

    real = container.jobs.create
    calls = []

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return real(*args, **kwargs)

    container.jobs.create = fails_once
    with TestClient(app, raise_server_exceptions=False) as http:
        client = openai.OpenAI(
            base_url="http://testserver/v1",
            api_key=settings.bootstrap_api_key,
            http_client=http,
            max_retries=0,
        )
        with pytest.raises(openai.InternalServerError):
            client.fine_tuning.jobs.create(model=TINY, training_file=train_id, **key("k5"))
        job = client.fine_tuning.jobs.create(model=TINY, training_file=train_id, **key("k5"))
    assert len(calls) == 2 and [j.id for j in client.fine_tuning.jobs.list()] == [job.id]


def test_a_key_in_flight_is_409(client: openai.OpenAI, container: Any, principal: Any, train_id: str) -> None:
    now = container.db.now()
    held = repo.take(
        container.db,
        org_id=principal.org_id,
        project_id=principal.project_id,
        key="busy",
        method="POST",
        path="/v1/fine_tuning/jobs",
        fingerprint=None,
        expired_before=now - 86_400,
        abandoned_before=now - 900,
    )
    assert held.taken
    with pytest.raises(openai.ConflictError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=train_id, **key("busy"))
    assert err.value.code == "idempotency_key_in_use" and "still in progress" in err.value.message
    assert list(client.fine_tuning.jobs.list()) == []


def test_a_key_over_255_characters_is_400(client: openai.OpenAI, train_id: str) -> None:
    client.fine_tuning.jobs.create(model=TINY, training_file=train_id, **key("k" * 255))
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model=TINY, training_file=train_id, **key("k" * 256))
    assert err.value.param == "Idempotency-Key" and "255" in err.value.message
    assert len(list(client.fine_tuning.jobs.list())) == 1


def _blobs(settings: Any) -> list[Path]:
    return sorted(p for p in Path(settings.blobs_dir).rglob("*") if p.is_file())


def test_an_upload_retried_is_one_file_and_one_blob(
    client: openai.OpenAI, settings: Any, tmp_path: Path
) -> None:
    path = chat_file(tmp_path / "train.jsonl", 12)
    first = client.files.create(file=path.open("rb"), purpose="fine-tune", **key("up"))
    blobs = _blobs(settings)
    again = client.files.with_raw_response.create(file=path.open("rb"), purpose="fine-tune", **key("up"))
    assert again.headers["Idempotent-Replayed"] == "true" and again.parse().id == first.id
    assert _blobs(settings) == blobs
    other = chat_file(tmp_path / "other.jsonl", 13)
    with pytest.raises(openai.UnprocessableEntityError) as err:  # same name and purpose, other bytes
        client.files.create(file=("train.jsonl", other.read_bytes()), purpose="fine-tune", **key("up"))
    assert err.value.code == "idempotency_key_reused"
    assert _blobs(settings) == blobs
    assert [f.id for f in client.files.list()] == [first.id]


def test_eval_and_run_creation_replay(client: openai.OpenAI) -> None:
    ev = make_eval(client, [EXACT_MATCH], **key("ev"))
    assert make_eval(client, [EXACT_MATCH], **key("ev")).id == ev.id
    source: Any = jsonl_source([({"question": "q0", "answer": "a"}, "a")])
    run = client.evals.runs.create(ev.id, data_source=source, **key("run"))
    assert client.evals.runs.create(ev.id, data_source=source, **key("run")).id == run.id
    assert [e.id for e in client.evals.list()] == [ev.id]
    assert [r.id for r in client.evals.runs.list(ev.id)] == [run.id]


def test_keys_of_another_organisation_do_not_collide(
    client: openai.OpenAI, container: Any, http: Any, train_id: str, tmp_path: Path
) -> None:
    from afinar.services.orgs import create_org
    from tests.support.sdk import sdk

    _, secret = create_org(container.db, "other")
    other = sdk(http, secret)
    theirs = other.files.create(file=chat_file(tmp_path / "theirs.jsonl", 12).open("rb"), purpose="fine-tune")
    ours = client.fine_tuning.jobs.create(model=TINY, training_file=train_id, **key("shared"))
    job = other.fine_tuning.jobs.create(model=TINY, training_file=theirs.id, **key("shared"))
    assert job.id != ours.id and job.organization_id != ours.organization_id


def test_the_sweep_forgets_keys_older_than_the_ttl(
    client: openai.OpenAI, container: Any, clock: FixedClock, train_id: str
) -> None:
    from afinar.worker.loop import Worker

    first = client.fine_tuning.jobs.create(model=TINY, training_file=train_id, **key("old"))
    client.fine_tuning.jobs.create(model=TINY, training_file=train_id, suffix="x", **key("newer"))
    clock.advance(24 * 3600 - 1)
    Worker(container).sweep_if_due()
    assert repo.count(container.db) == 2  # train_id was uploaded without a key
    assert client.fine_tuning.jobs.create(model=TINY, training_file=train_id, **key("old")).id == first.id
    clock.advance(2)
    Worker(container).sweep_if_due()
    assert repo.count(container.db) == 0
    second = client.fine_tuning.jobs.create(model=TINY, training_file=train_id, suffix="y", **key("old"))
    assert second.id != first.id  # the key was forgotten: a new request under it


def test_the_ttl_is_at_least_24_hours() -> None:
    from pydantic import ValidationError

    from afinar.config import Settings

    assert Settings().idempotency_ttl_hours == 24
    with pytest.raises(ValidationError):
        Settings(idempotency_ttl_hours=23)


@pytest.fixture
def two_nodes(
    db_url: str, tmp_path: Path, tiny_catalog: Path
) -> Iterator[tuple[openai.OpenAI, openai.OpenAI]]:
    """Two API nodes (own data directories and containers) on one database and one master key."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from afinar.config import Settings
    from afinar.crypto.keys import encode_key, generate_key
    from afinar.server import create_app
    from afinar.services.container import Container
    from afinar.services.orgs import bootstrap
    from tests.support.sdk import sdk

    master = SecretStr(encode_key(generate_key()))
    containers = []
    for name in ("a", "b"):
        settings = Settings(
            data_dir=tmp_path / name,
            database_url=db_url,
            catalog_file=tiny_catalog,
            embedded_worker=False,
            bootstrap_api_key="sk-test-key",
            master_key=master,
        )
        c = Container(settings)
        c.migrate()
        containers.append(c)
    bootstrap(containers[0].db, "default", "sk-test-key")
    with TestClient(create_app(containers[0])) as a, TestClient(create_app(containers[1])) as b:
        yield sdk(a, "sk-test-key"), sdk(b, "sk-test-key")
    for c in containers:
        c.close()


def test_a_retry_through_another_node_gets_the_first_answer(  # SQLite, PostgreSQL
    two_nodes: tuple[openai.OpenAI, openai.OpenAI],
) -> None:
    a, b = two_nodes
    ev = make_eval(a, [EXACT_MATCH], **key("lb"))
    replayed = b.evals.with_raw_response.create(
        name="shop eval",
        data_source_config={"type": "custom", "item_schema": ITEM_SCHEMA},
        testing_criteria=[EXACT_MATCH],  # type: ignore[list-item]
        **key("lb"),
    )
    assert replayed.headers["Idempotent-Replayed"] == "true" and replayed.parse().id == ev.id
    assert [e.id for e in b.evals.list()] == [ev.id]


def _take(
    db: Any, k: str, fingerprint: str | None = "f", org: str = "org-1", path: str = "/v1/x"
) -> repo.Held:
    now = db.now()
    return repo.take(
        db,
        org_id=org,
        project_id="proj_1",
        key=k,
        method="POST",
        path=path,
        fingerprint=fingerprint,
        expired_before=now - 86_400,
        abandoned_before=now - 900,
    )


def test_the_insert_takes_the_key_once(db: Any) -> None:  # SQLite, PostgreSQL
    db.clock = FixedClock(1_000_000)
    first = _take(db, "k")
    second = _take(db, "k")
    assert first.taken and not second.taken and second.status_code is None  # in flight
    assert _take(db, "k", org="org-2").taken  # another organisation's key
    repo.finish(db, first.seq, fingerprint="f", status_code=200, response={"id": "x"})
    done = _take(db, "k")
    assert not done.taken and (done.status_code, done.response, done.fingerprint) == (200, {"id": "x"}, "f")


def test_a_released_key_and_an_abandoned_one_are_taken_again(db: Any) -> None:  # SQLite, PostgreSQL
    clock = db.clock = FixedClock(1_000_000)
    first = _take(db, "k")
    repo.release(db, first.seq)
    again = _take(db, "k")
    assert again.taken
    clock.advance(899)
    assert not _take(db, "k").taken  # still in flight
    clock.advance(2)
    takeover = _take(db, "k", fingerprint="g")
    assert takeover.taken and takeover.seq == again.seq and takeover.fingerprint == "g"
    assert not _take(db, "k").taken


def test_the_sweep_removes_rows_before_the_cutoff(db: Any) -> None:  # SQLite, PostgreSQL
    clock = db.clock = FixedClock(1_000_000)
    _take(db, "old")
    clock.advance(10)
    _take(db, "new")
    assert repo.sweep(db, 1_000_005) == 1 and repo.count(db) == 1
