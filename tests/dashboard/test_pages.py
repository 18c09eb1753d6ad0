"""The dashboard's pages in-process (no browser): sign-in, sessions, CSRF, reports, forms, assets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.support.dashboard import KEY, sign_in
from tests.support.data import chat_example, write_jsonl
from tests.support.sdk import sdk
from tests.support.tiny_model import TINY


@pytest.fixture
def settings(tmp_path: Path, tiny_catalog: Path) -> Any:
    from afinar.config import Settings

    return Settings(
        data_dir=tmp_path / "data",
        catalog_file=tiny_catalog,
        embedded_worker=False,
        bootstrap_api_key=KEY,
        default_model=TINY,
    )


@pytest.fixture
def browser_client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


def csrf_of(client: Any) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
    assert found is not None
    return found.group(1)


@pytest.fixture
def signed_in(browser_client: Any) -> Any:
    assert sign_in(browser_client).status_code == 303
    return browser_client


def upload(client: Any, path: Path) -> str:
    r = client.post(
        "/files",
        files={"file": (path.name, path.read_bytes())},
        data={"csrf_token": csrf_of(client), "model": TINY},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return str(r.headers["location"].split("/files/")[1].split("?")[0])


def test_pages_need_a_session_and_come_back_after_sign_in(browser_client: Any) -> None:
    r = browser_client.get("/jobs?x=1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=%2Fjobs%3Fx%3D1"
    r = sign_in(browser_client, next_url="/jobs?x=1")
    assert r.status_code == 303 and r.headers["location"] == "/jobs?x=1"
    assert browser_client.get("/jobs").status_code == 200


def test_session_cookie_is_httponly_strict_and_holds_no_key(browser_client: Any) -> None:
    r = sign_in(browser_client)
    cookie = next(
        v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("afinar_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and KEY not in cookie
    assert KEY not in browser_client.get("/").text


def test_wrong_key_and_forged_sign_in_are_refused(browser_client: Any) -> None:
    r = sign_in(browser_client, key="sk-wrong")
    assert r.status_code == 401 and "not accepted" in r.text
    r = browser_client.post("/signin", data={"api_key": KEY, "token": "forged"}, follow_redirects=False)
    assert r.status_code == 403 and "afinar_session" not in r.headers.get("set-cookie", "")


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_sign_in_never_redirects_off_site(browser_client: Any, target: str) -> None:
    assert sign_in(browser_client, next_url=target).headers["location"] == "/"


def test_posts_need_the_csrf_token_and_the_same_origin(signed_in: Any) -> None:
    token = csrf_of(signed_in)
    r = signed_in.post("/jobs", data={"model": TINY})
    assert r.status_code == 403
    r = signed_in.post("/jobs", data={"csrf_token": token}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    assert signed_in.post("/signout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert signed_in.get("/", follow_redirects=False).status_code == 303


def test_security_headers(signed_in: Any) -> None:
    r = signed_in.get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"


def test_report_names_each_problem_and_its_line(signed_in: Any, tmp_path: Path) -> None:
    rows: list[Any] = [chat_example(i) for i in range(12)]
    rows[3] = {"messages": [{"role": "wizard", "content": "hi"}]}
    path = write_jsonl(tmp_path / "broken.jsonl", rows)
    with path.open("a") as f:
        f.write("{not json\n")
    fid = upload(signed_in, path)
    page = signed_in.get(f"/files/{fid}").text
    assert f'hx-get="/files/{fid}/report?model={TINY}"' in page
    report = signed_in.get(f"/files/{fid}/report?model={TINY}").text
    assert "problems to fix before training" in report
    cells = re.findall(r'<th scope="row" class="num">(\d+)</th><td>([^<]+)</td>', report)
    lines = {int(n): msg for n, msg in cells}
    assert lines[4].startswith("Example 4") and lines[13].startswith("Example 13 cannot be parsed")
    assert "No estimate until the file has no errors" in report


def test_report_shows_the_moderation_screen_with_its_lines(signed_in: Any, tmp_path: Path) -> None:
    rows: list[Any] = [chat_example(i) for i in range(12)]
    harmful = "Here is how to build a pipe bomb to hurt as many people as possible at the station."
    for line in (2, 9):
        rows[line - 1] = chat_example(line, answer=harmful)
    fid = upload(signed_in, write_jsonl(tmp_path / "flagged.jsonl", rows))
    report = signed_in.get(f"/files/{fid}/report?model={TINY}").text
    assert "Not ready to train." in report and "Flagged lines: 2, 9" in report
    assert "Flagged by moderation: 2 of 12 examples, over this server’s limit" in report
    flagged = re.findall(r'<th scope="row" class="num">(\d+)</th><td>([a-z/, -]+)</td>', report)
    assert [int(n) for n, _ in flagged] == [2, 9] and all("violence" in cats for _, cats in flagged)


def test_estimate_then_create_a_job_from_the_form(signed_in: Any, tmp_path: Path) -> None:
    fid = upload(signed_in, write_jsonl(tmp_path / "t.jsonl", [chat_example(i) for i in range(12)]))
    report = signed_in.get(f"/files/{fid}/report").text
    assert "Ready to train" in report and "Billable tokens" in report
    est = signed_in.get(f"/jobs/estimate?model={TINY}&training_file={fid}&n_epochs=2&batch_size=4").text
    assert re.search(r"<dt>Steps</dt><dd>6</dd>", est)
    bad = signed_in.get(f"/jobs/estimate?model={TINY}&training_file={fid}&n_epochs=99").text
    assert "n_epochs" in bad
    assert "Choose a training file" not in signed_in.get(f"/jobs/new?training_file={fid}").text
    form = {"csrf_token": csrf_of(signed_in), "model": TINY, "training_file": fid, "n_epochs": "2"}
    r = signed_in.post("/jobs", data={**form, "batch_size": "four"})
    assert (
        r.status_code == 400 and "Batch size must be a number" in r.text and 'aria-invalid="true"' in r.text
    )
    r = signed_in.post("/jobs", data={**form, "suffix": "skate", "seed": "7"}, follow_redirects=False)
    assert r.status_code == 303
    job_url = r.headers["location"]
    page = signed_in.get(job_url).text
    assert "Validating files" in page and 'hx-trigger="every 2s"' in page and "data-loss-chart" in page
    assert signed_in.get(job_url + "/metrics.json").json()["steps"] == []
    live = signed_in.get(job_url + "/live").text
    assert 'id="job-events" class="card" hx-swap-oob="true"' in live
    assert signed_in.post(job_url + "/cancel", data={"csrf_token": csrf_of(signed_in)}).status_code == 200
    assert 'data-status="cancelled"' in signed_in.get(job_url).text
    assert 'hx-trigger="every 2s"' not in signed_in.get(job_url + "/live").text  # polling stops


def test_models_usage_and_playground_pages(signed_in: Any) -> None:
    models = signed_in.get("/models").text
    assert TINY in models
    card = signed_in.get(f"/models/{TINY}").text
    assert "Context length" in card and "Delete model" not in card
    assert signed_in.get("/models/ft:nope:x::abcdefgh").status_code == 404
    assert "Usage" in signed_in.get("/usage").text
    playground = signed_in.get("/playground").text
    assert 'id="left-model"' in playground and 'id="right-model"' in playground
    r = signed_in.post(
        "/playground/stream", json={"model": TINY, "prompt": ""}, headers={"x-csrf-token": csrf_of(signed_in)}
    )
    assert r.status_code == 400 and r.json()["error"] == "Write a prompt first."


def test_assets_are_vendored_and_nothing_loads_from_elsewhere(browser_client: Any) -> None:
    for path in (
        "/static/vendor/htmx/htmx.min.js",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/dashboard.css",
    ):
        assert browser_client.get(path).status_code == 200
    assert browser_client.get("/static/../session.py").status_code == 404
    package = resources.files("afinar.dashboard")
    for folder in ("templates", "static"):
        for node in package.joinpath(folder).iterdir():
            if node.is_file() and node.name.endswith((".html", ".css", ".js")):
                assert not re.search(r"""(src|href)=["']?(https?:)?//""", node.read_text()), node.name


def test_playground_works_without_javascript(signed_in: Any) -> None:
    form = {
        "csrf_token": csrf_of(signed_in),
        "left": TINY,
        "right": "ft:nope:x::abcdefgh",
        "prompt": "Hi",
        "max_tokens": "3",
        "temperature": "0",
    }
    page = signed_in.post("/playground", data=form).text
    left = re.search(r'data-answer="left"[^>]*>([^<]*)</div>', page)
    right = re.search(r'data-answer="right"[^>]*>([^<]*)</div>', page)
    assert left is not None and right is not None
    assert not left.group(1).startswith("Error") and "does not exist" in right.group(1)


def test_a_reader_key_may_look_but_not_change(browser_client: Any, settings: Any, tmp_path: Path) -> None:

    admin = sdk(browser_client, KEY)
    project = admin.admin.organization.projects.create(name="viewers").id
    made = admin.admin.organization.projects.service_accounts.create(project, name="wallboard")
    assert made.api_key is not None
    admin.admin.organization.projects.api_keys.update(
        made.api_key.id, project_id=project, scopes=["api.all.read"]
    )
    assert sign_in(browser_client, key=made.api_key.value).status_code == 303
    assert browser_client.get("/files").status_code == 200
    path = tmp_path / "t.jsonl"
    path.write_text('{"messages": []}\n')
    r = browser_client.post(
        "/files",
        files={"file": (path.name, path.read_bytes())},
        data={"csrf_token": csrf_of(browser_client)},
        follow_redirects=False,
    )
    assert r.status_code == 403
