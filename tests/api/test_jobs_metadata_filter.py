"""``client.fine_tuning.jobs.list(metadata=…)`` as on OpenAI: the SDK sends ``metadata[k]=v`` query
parameters, every given pair must match, and the filter pages like the plain list (newest first,
``after``, ``limit``, ``has_more``), on SQLite and PostgreSQL. ``metadata=null`` lists the jobs
created without metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.data import chat_file
from tests.support.tiny_model import TINY


@pytest.fixture
def settings(settings: Any, db_url: str) -> Any:
    return settings.model_copy(update={"database_url": db_url})


@pytest.fixture
def jobs(client: openai.OpenAI, tmp_path: Path) -> dict[str, Any]:
    """Six jobs, oldest first: four of team "a" (two in "eu"), one of team "b" and one without metadata."""
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 12).open("rb"), purpose="fine-tune").id
    metas: list[dict[str, str] | None] = [
        {"team": "a", "region": "eu"},
        {"team": "a", "region": "us"},
        {"team": "b", "region": "eu"},
        None,
        {"team": "a", "region": "eu", "note": 'x.y "quoted"'},
        {"team": "a"},
    ]
    made = [client.fine_tuning.jobs.create(model=TINY, training_file=fid, metadata=m) for m in metas]
    return {"ids": [j.id for j in made], "client": client}


def test_every_given_pair_must_match(jobs: dict[str, Any]) -> None:
    client, ids = jobs["client"], jobs["ids"]
    listed = client.fine_tuning.jobs.list(metadata={"team": "a"})
    assert [j.id for j in listed.data] == [ids[5], ids[4], ids[1], ids[0]]
    assert all(j.metadata and j.metadata["team"] == "a" for j in listed.data)
    both = client.fine_tuning.jobs.list(metadata={"team": "a", "region": "eu"})
    assert [j.id for j in both.data] == [ids[4], ids[0]]
    assert client.fine_tuning.jobs.list(metadata={"team": "c"}).data == []
    assert client.fine_tuning.jobs.list(metadata={"region": "eu", "team": "b"}).data[0].id == ids[2]
    odd = client.fine_tuning.jobs.list(metadata={"note": 'x.y "quoted"'})
    assert [j.id for j in odd.data] == [ids[4]]


def test_the_filter_pages_like_the_list(jobs: dict[str, Any]) -> None:
    client, ids = jobs["client"], jobs["ids"]
    first = client.fine_tuning.jobs.list(metadata={"team": "a"}, limit=2)
    assert [j.id for j in first.data] == [ids[5], ids[4]] and first.has_more
    second = client.fine_tuning.jobs.list(metadata={"team": "a"}, limit=2, after=ids[4])
    assert [j.id for j in second.data] == [ids[1], ids[0]] and not second.has_more
    # The SDK's auto-pagination follows ``after`` with the filter kept.
    walked = client.fine_tuning.jobs.list(metadata={"team": "a"}, limit=1)
    assert [j.id for j in walked] == [ids[5], ids[4], ids[1], ids[0]]
    # ``after`` may name a job the filter leaves out: the page starts after it all the same.
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "a"}, after=ids[3])] == [
        ids[1],
        ids[0],
    ]


def test_metadata_null_lists_jobs_without_metadata(jobs: dict[str, Any], http: Any) -> None:
    client, ids = jobs["client"], jobs["ids"]
    listed = client.fine_tuning.jobs.list(extra_query={"metadata": "null"})
    assert [j.id for j in listed.data] == [ids[3]]


def test_another_organisation_never_matches(jobs: dict[str, Any], container: Any, http: Any) -> None:
    from afinar.services.orgs import create_org
    from tests.support.sdk import sdk

    _, key = create_org(container.db, "other")
    other = sdk(http, key)
    assert other.fine_tuning.jobs.list(metadata={"team": "a"}).data == []
