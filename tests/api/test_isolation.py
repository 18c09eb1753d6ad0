"""One organisation never sees or uses another's objects, on every route the app declares.

The routes come from the app's own OpenAPI schema, so a new route is covered automatically: a
route with a path parameter this test does not know how to fill makes it fail until it does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.data import chat_file
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker


@pytest.fixture
def foreign(client: openai.OpenAI, container, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Objects of the default organisation (A): a file, a succeeded job, its model and a checkpoint."""
    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid, hyperparameters={"n_epochs": 1})
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded"
    ckpt = client.fine_tuning.jobs.checkpoints.list(job.id).data[0].fine_tuned_model_checkpoint
    from afinar.store.orgs import default_project

    with container.db.session() as s:
        project = default_project(s, job.organization_id)
        assert project is not None
    from afinar.services.orgs import authenticate
    from afinar.services.projects import NewMember
    from afinar.services.service_accounts import NewServiceAccount

    org = job.organization_id
    accounts = container.service_accounts
    account, key, _ = accounts.create_service_account(org, project.id, NewServiceAccount("bot"))
    user = container.users.add_user(org, "ana@example.com", role="owner")
    container.projects.add_member(org, project.id, NewMember("member", user_id=user.id))
    assert key is not None
    return {
        "file_id": fid,
        "job_id": job.id,
        "model": str(job.fine_tuned_model),
        "checkpoint": ckpt,
        "project_id": project.id,
        "key_id": authenticate(container.db, "sk-test-key").key_id,
        "api_key_id": key.id,
        "service_account_id": account.id,
        "user_id": user.id,
        "response_id": client.responses.create(model=TINY, input="hi", max_output_tokens=2).id,
        "webhook_endpoint_id": client.webhooks.create(  # the discard port: nothing is ever sent away
            name="hook", url="http://127.0.0.1:9/", event_types=["fine_tuning.job.failed"]
        ).id,
    }


@pytest.fixture
def intruder(container, http) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    from afinar.services.orgs import create_org

    _, key = create_org(container.db, "intruder")
    return openai.OpenAI(base_url="http://testserver/v1", api_key=key, http_client=http, max_retries=0)


PARAM_VALUES = {
    "file_id": "file_id",
    "job_id": "job_id",
    "fine_tuning_job_id": "job_id",
    "model": "model",
    "fine_tuned_model_checkpoint": "checkpoint",
    "permission_id": "job_id",  # any id: the foreign checkpoint already answers 404
    "project_id": "project_id",
    "eval_id": "job_id",
    "run_id": "job_id",
    "output_item_id": "job_id",
    "key_id": "key_id",
    "api_key_id": "api_key_id",
    "service_account_id": "service_account_id",
    "user_id": "user_id",
    "response_id": "response_id",
    "webhook_endpoint_id": "webhook_endpoint_id",
}


def test_every_route_with_an_id_answers_404_to_another_org(app, http, foreign, intruder) -> None:  # type: ignore[no-untyped-def]
    headers = {"authorization": f"Bearer {intruder.api_key}"}
    checked = 0
    for path, ops in app.openapi()["paths"].items():
        names = re.findall(r"{([^}:]+)(?::[^}]*)?}", path)
        if not path.startswith("/v1/") or not names:
            continue
        for name in names:
            assert name in PARAM_VALUES, f"{path}: teach this test what a foreign '{name}' is"
        url = path
        for name in names:
            url = re.sub(r"{" + name + r"(?::[^}]*)?}", foreign[PARAM_VALUES[name]], url)
        for method in ops:
            if method not in ("get", "post", "delete", "put", "patch"):
                continue
            body: Any = {} if method in ("post", "put", "patch") else None
            r = http.request(method.upper(), url, headers=headers, json=body)
            assert r.status_code == 404, f"{method.upper()} {url} -> {r.status_code} {r.text[:200]}"
            checked += 1
    assert checked >= 8
    # Nothing was changed by the intruder's attempts.
    assert (
        http.get(
            f"/v1/files/{foreign['file_id']}", headers={"authorization": "Bearer sk-test-key"}
        ).status_code
        == 200
    )


def test_lists_never_show_foreign_objects(foreign, intruder: openai.OpenAI) -> None:  # type: ignore[no-untyped-def]
    assert list(intruder.files.list()) == []
    assert list(intruder.fine_tuning.jobs.list()) == []
    ids = {m.id for m in intruder.models.list()}
    assert foreign["model"] not in ids and foreign["checkpoint"] not in ids and TINY in ids


def test_foreign_model_cannot_be_used(foreign, intruder: openai.OpenAI, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name in (foreign["model"], foreign["checkpoint"]):
        with pytest.raises(openai.NotFoundError) as err:
            intruder.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
        assert err.value.code == "model_not_found"
    own = intruder.files.create(file=chat_file(tmp_path / "o.jsonl", 10).open("rb"), purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as bad:
        intruder.fine_tuning.jobs.create(model=foreign["model"], training_file=own)
    assert bad.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad_file:
        intruder.fine_tuning.jobs.create(model=TINY, training_file=foreign["file_id"])
    assert bad_file.value.param == "training_file"
