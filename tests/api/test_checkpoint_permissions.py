"""Checkpoint sharing through the official SDK (``client.fine_tuning.checkpoints.permissions``):
an admin key shares a checkpoint of one project with other projects of the organisation, whose keys
may then chat with it until the permission is deleted."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.fine_tuning.checkpoints import (
    PermissionCreateResponse,
    PermissionDeleteResponse,
    PermissionListResponse,
    PermissionRetrieveResponse,
)

from tests.support.data import chat_file
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker

HI: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def checkpoint(admin: openai.OpenAI, container: Any, tmp_path: Path) -> str:
    """A checkpoint of a job trained in the default project (the admin key's)."""
    fid = admin.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    job = admin.fine_tuning.jobs.create(model=TINY, training_file=fid, hyperparameters={"n_epochs": 1})
    run_worker(container)
    assert admin.fine_tuning.jobs.retrieve(job.id).status == "succeeded"
    return admin.fine_tuning.jobs.checkpoints.list(job.id).data[-1].fine_tuned_model_checkpoint


@pytest.fixture
def stored(admin: openai.OpenAI, container: Any, tmp_path: Path) -> str:
    """A checkpoint's rows without training (for the tests that never call it): a job left queued,
    its model and one checkpoint, in the default project."""
    from afinar.store.admin import default_project_id
    from afinar.store.tables import Checkpoint, FineTunedModel

    fid = admin.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    job = admin.fine_tuning.jobs.create(model=TINY, training_file=fid)
    model = f"ft:{TINY}:default::abcdefgh"
    with container.db.session() as s:
        project = default_project_id(s, job.organization_id)
        common = {"org_id": job.organization_id, "job_id": job.id, "created_at": 1}
        where = str(tmp_path)
        s.add(
            FineTunedModel(
                id=model,
                project_id=project,
                base_model=TINY,
                owned_by="default",
                adapter_path=where,
                **common,
            )
        )
        s.add(
            Checkpoint(
                id="ftckpt_x",
                step_number=3,
                epoch=1,
                model_name=f"{model}:ckpt-step-3",
                metrics={},
                path=where,
                **common,
            )
        )
    return f"{model}:ckpt-step-3"


def retrieve(admin: openai.OpenAI, checkpoint: str, **kw: Any) -> PermissionRetrieveResponse:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks retrieve deprecated (use list)
        raw = admin.fine_tuning.checkpoints.permissions.with_raw_response.retrieve(checkpoint, **kw)
    return PermissionRetrieveResponse.model_validate(raw.http_response.json(), strict=True)


def test_share_with_two_projects_list_delete_and_serve(
    admin: openai.OpenAI, project: str, bot: openai.OpenAI, checkpoint: str, container: Any
) -> None:
    permissions = admin.fine_tuning.checkpoints.permissions
    # Not shared yet: the project's key cannot call another project's checkpoint.
    with pytest.raises(openai.NotFoundError):
        bot.chat.completions.create(model=checkpoint, messages=HI, max_tokens=2)
    other = admin.admin.organization.projects.create(name="other").id

    container.clock = lambda: 1_900_000_000.0
    raw = permissions.with_raw_response.create(checkpoint, project_ids=[project, other, project])
    body = raw.http_response.json()
    assert body["object"] == "list" and body["has_more"] is False
    made = [PermissionCreateResponse.model_validate(d, strict=True) for d in body["data"]]
    assert [m.project_id for m in made] == [project, other]  # each project once, in order
    assert all(m.object == "checkpoint.permission" and m.id.startswith("cp_") for m in made)
    assert {m.created_at for m in made} == {1_900_000_000}  # the container's clock
    # Sharing again returns the same permission.
    assert permissions.create(checkpoint, project_ids=[other]).data[0].id == made[1].id

    listed = retrieve(admin, checkpoint, order="ascending")
    assert [d.id for d in listed.data] == [m.id for m in made] and not listed.has_more
    assert listed.first_id == made[0].id and listed.last_id == made[1].id
    assert [d.id for d in retrieve(admin, checkpoint).data] == [made[1].id, made[0].id]  # newest first
    assert [d.id for d in retrieve(admin, checkpoint, project_id=other).data] == [made[1].id]
    page = retrieve(admin, checkpoint, limit=1, order="ascending")
    assert [d.id for d in page.data] == [made[0].id] and page.has_more
    after = retrieve(admin, checkpoint, limit=1, order="ascending", after=made[0].id)
    assert [d.id for d in after.data] == [made[1].id]
    paged = list(permissions.list(checkpoint, order="ascending"))
    assert all(isinstance(p, PermissionListResponse) for p in paged)
    assert [p.id for p in paged] == [m.id for m in made]

    # Shared: the project's key chats with the checkpoint of the default project.
    reply = bot.chat.completions.create(model=checkpoint, messages=HI, max_tokens=2)
    assert reply.model == checkpoint and reply.choices[0].message.role == "assistant"

    raw_del = permissions.with_raw_response.delete(made[0].id, fine_tuned_model_checkpoint=checkpoint)
    gone = PermissionDeleteResponse.model_validate(raw_del.http_response.json(), strict=True)
    assert gone.id == made[0].id and gone.deleted and gone.object == "checkpoint.permission"
    assert [d.project_id for d in retrieve(admin, checkpoint).data] == [other]
    with pytest.raises(openai.NotFoundError):  # deleted: access is gone at once
        bot.chat.completions.create(model=checkpoint, messages=HI, max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        permissions.delete(made[0].id, fine_tuned_model_checkpoint=checkpoint)
    assert bot.models.list()  # the project's key still works otherwise

    types = [e.type for e in admin.admin.organization.audit_logs.list(limit=20).data]
    assert types.count("checkpoint_permission.created") == 2 and "checkpoint_permission.deleted" in types


def test_unknown_checkpoint_is_404(admin: openai.OpenAI, project: str, stored: str) -> None:
    permissions = admin.fine_tuning.checkpoints.permissions
    for name in (stored.replace("ckpt-step-", "ckpt-step-9"), stored.rsplit(":", 1)[0], "nope"):
        with pytest.raises(openai.NotFoundError) as err:
            permissions.create(name, project_ids=[project])
        assert err.value.param == "fine_tuned_model_checkpoint"
        with pytest.raises(openai.NotFoundError):
            retrieve(admin, name)
        with pytest.raises(openai.NotFoundError):
            permissions.delete("cp_x", fine_tuned_model_checkpoint=name)
    with pytest.raises(openai.NotFoundError):  # an unknown checkpoint answers 404 whatever the body
        permissions.create(name, project_ids=[])


def test_project_ids_must_be_projects_of_the_organisation(
    admin: openai.OpenAI, stored: str, container: Any
) -> None:
    from afinar.services.orgs import create_org
    from afinar.store.admin import default_project_id

    other_org, _ = create_org(container.db, "elsewhere")
    with container.db.session() as s:
        foreign = default_project_id(s, other_org.id)
    assert foreign is not None
    permissions = admin.fine_tuning.checkpoints.permissions
    for project_ids in ([foreign], ["proj_nope"], [], [""], "proj_x"):
        with pytest.raises(openai.BadRequestError) as err:
            permissions.create(stored, project_ids=project_ids)  # type: ignore[arg-type]
        assert err.value.param == "project_ids"
    archived = admin.admin.organization.projects.create(name="old").id
    admin.admin.organization.projects.archive(archived)
    with pytest.raises(openai.BadRequestError) as err:
        permissions.create(stored, project_ids=[archived])
    assert err.value.param == "project_ids"
    assert retrieve(admin, stored).data == []  # nothing was shared by a refused request


def test_a_project_key_is_refused_like_on_other_admin_routes(
    bot: openai.OpenAI, project: str, stored: str
) -> None:
    permissions = bot.fine_tuning.checkpoints.permissions
    with pytest.raises(openai.PermissionDeniedError) as err:
        permissions.create(stored, project_ids=[project])
    assert err.value.code == "insufficient_permissions"
    with pytest.raises(openai.PermissionDeniedError):
        list(permissions.list(stored))
    with pytest.raises(openai.PermissionDeniedError):
        permissions.delete("cp_x", fine_tuned_model_checkpoint=stored)
    with pytest.raises(openai.PermissionDeniedError):  # still refused, and the same for admin routes
        bot.admin.organization.projects.list()
