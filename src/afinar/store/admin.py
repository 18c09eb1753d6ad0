"""Projects, keys, users, service accounts; and the project scope of a request.

The project scope is a per-request filter (a ``ContextVar``) that the ORM applies to every SELECT
of files, jobs, fine-tuned models, evals and eval runs: a request made with a project key reads only
its project's rows, whatever service or repository runs the query. Rows without a project (written
by code that does not know one) belong to the organisation's default project.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from afinar.store.pagination import Page, paginate
from afinar.store.tables import (
    ApiKey,
    Eval,
    EvalRun,
    File,
    FineTunedModel,
    Job,
    Organization,
    OrgUser,
    Project,
    ProjectMember,
    ServiceAccount,
)

# --- project scope -------------------------------------------------------------------------------

SCOPED = (File, Job, FineTunedModel, Eval, EvalRun)


@dataclass(frozen=True)
class ProjectScope:
    project_id: str
    include_unassigned: bool  # the default project also holds rows written without a project


_scope: ContextVar[ProjectScope | None] = ContextVar("afinar_project_scope", default=None)


def _criteria(cls: Any, scope: ProjectScope) -> Any:
    if scope.include_unassigned:
        return or_(cls.project_id == scope.project_id, cls.project_id.is_(None))
    return cls.project_id == scope.project_id


def _apply_scope(state: ORMExecuteState) -> None:
    scope = _scope.get()
    if scope is None or not state.is_select or state.is_column_load or state.is_relationship_load:
        return
    # Plain expressions (not lambdas): their bound values are part of each statement's cache key.
    state.statement = state.statement.options(
        *(with_loader_criteria(cls, _criteria(cls, scope), include_aliases=True) for cls in SCOPED)
    )


def install_scope() -> None:
    """Register the filter (once per process); only requests that set a scope are affected."""
    if not event.contains(Session, "do_orm_execute", _apply_scope):
        event.listen(Session, "do_orm_execute", _apply_scope)


def set_scope(scope: ProjectScope | None) -> None:
    """Scope the rest of the current request (its context) to one project."""
    install_scope()
    _scope.set(scope)


def current_scope() -> ProjectScope | None:
    return _scope.get()


@contextmanager
def scoped(scope: ProjectScope | None) -> Iterator[None]:
    """Run a block under a scope (tests, CLI), restoring the previous one afterwards."""
    install_scope()
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)


# --- organisations -------------------------------------------------------------------------------


def all_orgs(s: Session) -> list[Organization]:
    return list(s.scalars(select(Organization).order_by(Organization.seq)))


# --- projects ------------------------------------------------------------------------------------


def get_project(s: Session, org_id: str, project_id: str) -> Project | None:
    return s.scalar(select(Project).where(Project.org_id == org_id, Project.id == project_id))


def project_org_id(s: Session, project_id: str) -> str | None:
    """The organisation of a project of any organisation; None when no such project exists."""
    return s.scalar(select(Project.org_id).where(Project.id == project_id))


def default_project_id(s: Session, org_id: str) -> str | None:
    return s.scalar(select(Project.id).where(Project.org_id == org_id).order_by(Project.seq).limit(1))


def projects_page(s: Session, org_id: str, *, after: str | None, limit: int, archived: bool) -> Page[Project]:
    stmt = select(Project).where(Project.org_id == org_id)
    if not archived:
        stmt = stmt.where(Project.archived_at.is_(None))
    return paginate(s, stmt, Project, after=after, limit=limit, desc=False)


def project_names(s: Session, org_id: str, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = s.execute(select(Project.id, Project.name).where(Project.org_id == org_id, Project.id.in_(ids)))
    return {pid: name for pid, name in rows}


# --- keys ----------------------------------------------------------------------------------------


def active_key(s: Session, org_id: str, key_id: str) -> ApiKey | None:
    return s.scalar(
        select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    )


def keys_page(
    s: Session, org_id: str, *, kind: str, project_id: str | None, after: str | None, limit: int, desc: bool
) -> Page[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.org_id == org_id, ApiKey.revoked_at.is_(None))
    if kind == "admin":
        stmt = stmt.where(ApiKey.kind == "admin")
    else:
        stmt = stmt.where(ApiKey.kind == "project", ApiKey.project_id == project_id)
    return paginate(s, stmt, ApiKey, after=after, limit=limit, desc=desc)


def count_admin_keys(s: Session, org_id: str) -> int:
    return len(
        s.scalars(
            select(ApiKey.id).where(
                ApiKey.org_id == org_id,
                ApiKey.revoked_at.is_(None),
                ApiKey.kind == "admin",
            )
        ).all()
    )


def revoke_owned(
    s: Session, org_id: str, owner_id: str, now: int, project_id: str | None = None
) -> list[str]:
    """Revoke every live key of a user or service account (in one project); return their ids."""
    where = [ApiKey.org_id == org_id, ApiKey.owner_id == owner_id, ApiKey.revoked_at.is_(None)]
    if project_id is not None:
        where.append(ApiKey.project_id == project_id)
    ids = list(s.scalars(select(ApiKey.id).where(*where)))
    if ids:
        s.execute(update(ApiKey).where(ApiKey.id.in_(ids)).values(revoked_at=now))
    return ids


# --- service accounts ----------------------------------------------------------------------------


def get_service_account(s: Session, org_id: str, project_id: str, sa_id: str) -> ServiceAccount | None:
    return s.scalar(
        select(ServiceAccount).where(
            ServiceAccount.org_id == org_id,
            ServiceAccount.project_id == project_id,
            ServiceAccount.id == sa_id,
        )
    )


def service_accounts_page(
    s: Session, org_id: str, project_id: str, *, after: str | None, limit: int
) -> Page[ServiceAccount]:
    stmt = select(ServiceAccount).where(
        ServiceAccount.org_id == org_id, ServiceAccount.project_id == project_id
    )
    return paginate(s, stmt, ServiceAccount, after=after, limit=limit, desc=False)


def service_account_by_id(s: Session, sa_id: str) -> ServiceAccount | None:
    return s.scalar(select(ServiceAccount).where(ServiceAccount.id == sa_id))


def key_owner(
    s: Session, key: ApiKey, org_id: str, project_id: str
) -> tuple[ServiceAccount | None, OrgUser | None, ProjectMember | None]:
    """The rows that decide a key's role in a project: its service account, or its user and the
    user's membership of the project (None where the key has no such owner)."""
    if key.owner_type == "service_account" and key.owner_id:
        return service_account_by_id(s, key.owner_id), None, None
    if key.owner_type == "user" and key.owner_id:
        user = get_user(s, org_id, key.owner_id)
        member = membership(s, project_id, user.id) if user is not None and user.role != "owner" else None
        return None, user, member
    return None, None, None


# --- users ---------------------------------------------------------------------------------------


def get_user(s: Session, org_id: str, user_id: str) -> OrgUser | None:
    return s.scalar(select(OrgUser).where(OrgUser.org_id == org_id, OrgUser.id == user_id))


def user_by_email(s: Session, org_id: str, email: str) -> OrgUser | None:
    return s.scalar(select(OrgUser).where(OrgUser.org_id == org_id, OrgUser.email == email))


def users_page(s: Session, org_id: str, *, after: str | None, limit: int, emails: list[str]) -> Page[OrgUser]:
    stmt = select(OrgUser).where(OrgUser.org_id == org_id)
    if emails:
        stmt = stmt.where(OrgUser.email.in_(emails))
    return paginate(s, stmt, OrgUser, after=after, limit=limit, desc=False)


def membership(s: Session, project_id: str, user_id: str) -> ProjectMember | None:
    return s.scalar(
        select(ProjectMember).where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)
    )


def memberships_of(s: Session, user_id: str) -> list[ProjectMember]:
    return list(
        s.scalars(select(ProjectMember).where(ProjectMember.user_id == user_id).order_by(ProjectMember.seq))
    )


def members_page(
    s: Session, project_id: str, *, after: str | None, limit: int
) -> Page[tuple[ProjectMember, OrgUser]]:
    """Members of a project with their user rows; ``after`` is a user id."""
    stmt = (
        select(ProjectMember, OrgUser)
        .join(OrgUser, OrgUser.id == ProjectMember.user_id)
        .where(ProjectMember.project_id == project_id)
    )
    if after:
        anchor = s.scalar(
            select(ProjectMember.seq).where(
                ProjectMember.project_id == project_id, ProjectMember.user_id == after
            )
        )
        if anchor is not None:
            stmt = stmt.where(ProjectMember.seq > anchor)
    rows = [(m, u) for m, u in s.execute(stmt.order_by(ProjectMember.seq).limit(limit + 1))]
    return Page(items=rows[:limit], has_more=len(rows) > limit)


def remove_memberships(s: Session, user_id: str) -> None:
    for m in memberships_of(s, user_id):
        s.delete(m)
