"""Files through the official SDK, in-process."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.support.data import chat_file


def test_upload_retrieve_content_delete(client: openai.OpenAI, tmp_path: Path) -> None:
    path = chat_file(tmp_path / "train.jsonl")
    f = client.files.create(file=path.open("rb"), purpose="fine-tune")
    assert f.id.startswith("file-") and f.status == "processed" and f.purpose == "fine-tune"
    assert f.bytes == path.stat().st_size and f.filename == "train.jsonl"
    assert client.files.retrieve(f.id).id == f.id
    assert client.files.content(f.id).read() == path.read_bytes()
    deleted = client.files.delete(f.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)


def test_binary_content_is_exact(client: openai.OpenAI) -> None:
    data = bytes(range(256)) * 10
    f = client.files.create(file=("blob.bin", data), purpose="user_data")
    assert client.files.content(f.id).read() == data


def test_fine_tune_needs_jsonl(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("train.csv", b"a,b\n"), purpose="fine-tune")
    assert "Must be .jsonl" in err.value.message and err.value.param == "file"


def test_bad_purpose(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]
    assert err.value.param == "purpose"


def test_list_paginates_and_terminates(client: openai.OpenAI) -> None:
    ids = [client.files.create(file=(f"f{i}.jsonl", b"{}\n"), purpose="fine-tune").id for i in range(5)]
    page = client.files.list(limit=2)
    assert [f.id for f in page.data] == ids[::-1][:2]
    assert page.has_more is True
    assert [f.id for f in client.files.list(limit=2)] == ids[::-1]  # auto-pagination ends
    asc = client.files.list(limit=10, order="asc")
    assert [f.id for f in asc.data] == ids and asc.has_more is False
    raw = client.files.with_raw_response.list(limit=2).http_response.json()
    assert raw["first_id"] == ids[-1] and raw["last_id"] == ids[-2]
    assert [f.id for f in client.files.list(purpose="user_data")] == []


def test_upload_size_limit(client: openai.OpenAI, container) -> None:  # type: ignore[no-untyped-def]
    container.settings.max_upload_bytes = 100
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("big.jsonl", b"x" * 1000), purpose="fine-tune")
    assert err.value.code == "file_too_large"
    assert list(client.files.list()) == []


def test_auth_required(http, settings) -> None:  # type: ignore[no-untyped-def]
    bad = openai.OpenAI(base_url="http://testserver/v1", api_key="sk-wrong", http_client=http, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.files.list()
    assert err.value.code == "invalid_api_key"


def test_unknown_route_is_openai_envelope(http) -> None:  # type: ignore[no-untyped-def]
    r = http.get("/v1/nope", headers={"authorization": "Bearer sk-test-key"})
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}
