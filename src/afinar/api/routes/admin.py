"""``/v1/organization/*``: admin API keys, projects, project API keys, service accounts, users,
project users and the audit log, in the shapes of ``client.admin.organization...`` (SDK 3.x).

Every route needs an admin key (``api/deps.get_principal`` refuses others with 403); objects of
another organisation answer 404.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from afinar.api.deps import get_container, get_principal, json_body, parse_body
from afinar.api.schemas import admin as schema
from afinar.domain.principal import Principal
from afinar.errors import InvalidRequest
from afinar.services import audit
from afinar.services.api_keys import ApiKeysService, scopes_of
from afinar.services.container import Container
from afinar.services.listing import check_limit
from afinar.services.projects import ProjectsService
from afinar.services.service_accounts import ServiceAccountsService
from afinar.services.users import UsersService
from afinar.store.audit import AuditQuery
from afinar.store.tables import ApiKey

router = APIRouter(tags=["admin"])

Body = dict[str, Any]


def api_keys(c: Container = Depends(get_container)) -> ApiKeysService:
    return c.api_keys


def projects(c: Container = Depends(get_container)) -> ProjectsService:
    return c.projects


def service_accounts(c: Container = Depends(get_container)) -> ServiceAccountsService:
    return c.service_accounts


def users(c: Container = Depends(get_container)) -> UsersService:
    return c.users


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: Body, *, first: Callable[[], object]) -> M:
    """``parse_body``, except that a body it refuses is judged only after ``first`` (the lookups of
    the path's objects) passed: an unknown or foreign id answers 404 whatever the body."""
    try:
        return parse_body(model, body)
    except InvalidRequest:
        first()
        raise


def _values(request: Request, name: str) -> list[str]:
    """A list query parameter, as ``name[]=a&name[]=b`` (the SDK) or ``name=a&name=b``."""
    return [*request.query_params.getlist(name + "[]"), *request.query_params.getlist(name)]


def _int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an integer", param=name) from None


# --- admin API keys ------------------------------------------------------------------------------


@router.post("/organization/admin_api_keys")
def create_admin_key(
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    a: ApiKeysService = Depends(api_keys),
) -> Body:
    key, secret = a.create_admin_key(p.org_id, parse_body(schema.AdminKeyCreate, body).to_domain())
    return schema.admin_key(key, secret)


@router.get("/organization/admin_api_keys")
def list_admin_keys(
    after: str | None = None,
    limit: int = 20,
    order: str = "asc",
    p: Principal = Depends(get_principal),
    a: ApiKeysService = Depends(api_keys),
) -> Body:
    page = a.admin_keys(p.org_id, after=after, limit=limit, order=order)
    return schema.listing(page.items, page.has_more, schema.admin_key)


@router.get("/organization/admin_api_keys/{key_id}")
def retrieve_admin_key(
    key_id: str, p: Principal = Depends(get_principal), a: ApiKeysService = Depends(api_keys)
) -> Body:
    return schema.admin_key(a.admin_key(p.org_id, key_id))


@router.delete("/organization/admin_api_keys/{key_id}")
def delete_admin_key(
    key_id: str, p: Principal = Depends(get_principal), a: ApiKeysService = Depends(api_keys)
) -> Body:
    return schema.deleted("organization.admin_api_key.deleted", a.delete_admin_key(p.org_id, key_id))


# --- projects ------------------------------------------------------------------------------------


@router.post("/organization/projects")
def create_project(
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    a: ProjectsService = Depends(projects),
) -> Body:
    return schema.project(a.create_project(p.org_id, parse_body(schema.ProjectCreate, body).to_domain()))


@router.get("/organization/projects")
def list_projects(
    after: str | None = None,
    limit: int = 20,
    include_archived: bool = False,
    p: Principal = Depends(get_principal),
    a: ProjectsService = Depends(projects),
) -> Body:
    page = a.projects(p.org_id, after=after, limit=limit, include_archived=include_archived)
    return schema.listing(page.items, page.has_more, schema.project)


@router.get("/organization/projects/{project_id}")
def retrieve_project(
    project_id: str, p: Principal = Depends(get_principal), a: ProjectsService = Depends(projects)
) -> Body:
    return schema.project(a.project(p.org_id, project_id))


@router.post("/organization/projects/{project_id}")
def update_project(
    project_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    a: ProjectsService = Depends(projects),
) -> Body:
    req = _parse(schema.ProjectModify, body, first=partial(a.project, p.org_id, project_id)).to_domain()
    return schema.project(a.update_project(p.org_id, project_id, req))


@router.post("/organization/projects/{project_id}/archive")
def archive_project(
    project_id: str, p: Principal = Depends(get_principal), a: ProjectsService = Depends(projects)
) -> Body:
    return schema.project(a.archive_project(p.org_id, project_id))


# --- project API keys ----------------------------------------------------------------------------


def _project_key(a: ApiKeysService, key: ApiKey) -> Body:
    return schema.project_key(key, a.owners([key]).get(key.id), scopes_of(key))


@router.get("/organization/projects/{project_id}/api_keys")
def list_project_keys(
    project_id: str,
    after: str | None = None,
    limit: int = 20,
    p: Principal = Depends(get_principal),
    a: ApiKeysService = Depends(api_keys),
) -> Body:
    page = a.project_keys(p.org_id, project_id, after=after, limit=limit)
    owners = a.owners(page.items)
    return schema.listing(
        page.items, page.has_more, lambda k: schema.project_key(k, owners.get(k.id), scopes_of(k))
    )


@router.get("/organization/projects/{project_id}/api_keys/{api_key_id}")
def retrieve_project_key(
    project_id: str,
    api_key_id: str,
    p: Principal = Depends(get_principal),
    a: ApiKeysService = Depends(api_keys),
) -> Body:
    return _project_key(a, a.project_key(p.org_id, project_id, api_key_id))


@router.post("/organization/projects/{project_id}/api_keys/{api_key_id}")
def update_project_key(
    project_id: str,
    api_key_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    a: ApiKeysService = Depends(api_keys),
) -> Body:
    found = partial(a.project_key, p.org_id, project_id, api_key_id)
    req = _parse(schema.ProjectKeyModify, body, first=found).to_domain()
    return _project_key(a, a.update_project_key(p.org_id, project_id, api_key_id, req))


@router.delete("/organization/projects/{project_id}/api_keys/{api_key_id}")
def delete_project_key(
    project_id: str,
    api_key_id: str,
    p: Principal = Depends(get_principal),
    a: ApiKeysService = Depends(api_keys),
) -> Body:
    key_id = a.delete_project_key(p.org_id, project_id, api_key_id)
    return schema.deleted("organization.project.api_key.deleted", key_id)


# --- service accounts ----------------------------------------------------------------------------


@router.post("/organization/projects/{project_id}/service_accounts")
def create_service_account(
    project_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    a: ServiceAccountsService = Depends(service_accounts),
) -> Body:
    found = partial(a.projects.project, p.org_id, project_id, active=True)
    req = _parse(schema.ServiceAccountCreate, body, first=found).to_domain()
    account, key, secret = a.create_service_account(p.org_id, project_id, req)
    out = schema.service_account(account)
    out["api_key"] = schema.service_account_key(key, secret) if key is not None and secret else None
    return out


@router.get("/organization/projects/{project_id}/service_accounts")
def list_service_accounts(
    project_id: str,
    after: str | None = None,
    limit: int = 20,
    p: Principal = Depends(get_principal),
    a: ServiceAccountsService = Depends(service_accounts),
) -> Body:
    page = a.service_accounts(p.org_id, project_id, after=after, limit=limit)
    return schema.listing(page.items, page.has_more, schema.service_account)


@router.get("/organization/projects/{project_id}/service_accounts/{service_account_id}")
def retrieve_service_account(
    project_id: str,
    service_account_id: str,
    p: Principal = Depends(get_principal),
    a: ServiceAccountsService = Depends(service_accounts),
) -> Body:
    return schema.service_account(a.service_account(p.org_id, project_id, service_account_id))


@router.post("/organization/projects/{project_id}/service_accounts/{service_account_id}")
def update_service_account(
    project_id: str,
    service_account_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    a: ServiceAccountsService = Depends(service_accounts),
) -> Body:
    found = partial(a.service_account, p.org_id, project_id, service_account_id)
    req = _parse(schema.ServiceAccountModify, body, first=found).to_domain()
    return schema.service_account(a.update_service_account(p.org_id, project_id, service_account_id, req))


@router.delete("/organization/projects/{project_id}/service_accounts/{service_account_id}")
def delete_service_account(
    project_id: str,
    service_account_id: str,
    p: Principal = Depends(get_principal),
    a: ServiceAccountsService = Depends(service_accounts),
) -> Body:
    sa_id = a.delete_service_account(p.org_id, project_id, service_account_id)
    return schema.deleted("organization.project.service_account.deleted", sa_id)


@router.post("/organization/projects/{project_id}/service_accounts/{service_account_id}/api_keys")
def create_service_account_key(
    project_id: str,
    service_account_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    a: ServiceAccountsService = Depends(service_accounts),
) -> Body:
    def found() -> None:
        a.service_account(p.org_id, project_id, service_account_id)
        a.projects.project(p.org_id, project_id, active=True)

    req = _parse(schema.ServiceAccountKeyCreate, body, first=found).to_domain()
    key, secret = a.create_service_account_key(p.org_id, project_id, service_account_id, req)
    return schema.service_account_key(key, secret)


# --- users ---------------------------------------------------------------------------------------


@router.get("/organization/users")
def list_users(
    request: Request,
    after: str | None = None,
    limit: int = 20,
    p: Principal = Depends(get_principal),
    a: UsersService = Depends(users),
) -> Body:
    page = a.users(p.org_id, after=after, limit=limit, emails=_values(request, "emails"))
    return schema.listing(page.items, page.has_more, lambda u: schema.org_user(u, a.user_projects(u)))


@router.get("/organization/users/{user_id}")
def retrieve_user(
    user_id: str, p: Principal = Depends(get_principal), a: UsersService = Depends(users)
) -> Body:
    user = a.user(p.org_id, user_id)
    return schema.org_user(user, a.user_projects(user))


@router.post("/organization/users/{user_id}")
def update_user(
    user_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    a: UsersService = Depends(users),
) -> Body:
    role = _parse(schema.UserModify, body, first=partial(a.user, p.org_id, user_id)).role
    user = a.update_user(p.org_id, user_id, role)
    return schema.org_user(user, a.user_projects(user))


@router.delete("/organization/users/{user_id}")
def delete_user(
    user_id: str, p: Principal = Depends(get_principal), a: UsersService = Depends(users)
) -> Body:
    return schema.deleted("organization.user.deleted", a.delete_user(p.org_id, user_id))


# --- project users -------------------------------------------------------------------------------


@router.post("/organization/projects/{project_id}/users")
def add_project_user(
    project_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    a: ProjectsService = Depends(projects),
) -> Body:
    found = partial(a.project, p.org_id, project_id, active=True)
    req = _parse(schema.ProjectUserCreate, body, first=found).to_domain()
    return schema.project_user(*a.add_member(p.org_id, project_id, req))


@router.get("/organization/projects/{project_id}/users")
def list_project_users(
    project_id: str,
    after: str | None = None,
    limit: int = 20,
    p: Principal = Depends(get_principal),
    a: ProjectsService = Depends(projects),
) -> Body:
    page = a.members(p.org_id, project_id, after=after, limit=limit)
    return schema.listing(page.items, page.has_more, lambda mu: schema.project_user(*mu))


@router.get("/organization/projects/{project_id}/users/{user_id}")
def retrieve_project_user(
    project_id: str,
    user_id: str,
    p: Principal = Depends(get_principal),
    a: ProjectsService = Depends(projects),
) -> Body:
    return schema.project_user(*a.member(p.org_id, project_id, user_id))


@router.post("/organization/projects/{project_id}/users/{user_id}")
def update_project_user(
    project_id: str,
    user_id: str,
    body: Body = Depends(json_body),
    p: Principal = Depends(get_principal),
    a: ProjectsService = Depends(projects),
) -> Body:
    found = partial(a.member, p.org_id, project_id, user_id)
    role = _parse(schema.ProjectUserModify, body, first=found).role
    return schema.project_user(*a.update_member(p.org_id, project_id, user_id, role))


@router.delete("/organization/projects/{project_id}/users/{user_id}")
def delete_project_user(
    project_id: str,
    user_id: str,
    p: Principal = Depends(get_principal),
    a: ProjectsService = Depends(projects),
) -> Body:
    return schema.deleted("organization.project.user.deleted", a.remove_member(p.org_id, project_id, user_id))


# --- audit log -----------------------------------------------------------------------------------


@router.get("/organization/audit_logs")
def list_audit_logs(
    request: Request,
    after: str | None = None,
    before: str | None = None,
    limit: int = 20,
    p: Principal = Depends(get_principal),
    c: Container = Depends(get_container),
) -> Body:
    check_limit(limit)
    q = AuditQuery(
        after=after,
        before=before,
        limit=limit,
        types=_values(request, "event_types"),
        project_ids=_values(request, "project_ids"),
        resource_ids=_values(request, "resource_ids"),
        actor_ids=_values(request, "actor_ids"),
        gt=_int(request, "effective_at[gt]"),
        gte=_int(request, "effective_at[gte]"),
        lt=_int(request, "effective_at[lt]"),
        lte=_int(request, "effective_at[lte]"),
    )
    page, names = audit.entries(c.db, p.org_id, q)
    return schema.listing(page.items, page.has_more, lambda e: schema.audit_entry(e, names))
