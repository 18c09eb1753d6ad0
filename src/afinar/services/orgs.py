"""Organisations and API keys: bootstrap on first start, and authentication of a bearer key.

A key is an organisation's ``admin`` key (owner; may call ``/v1/organization/*``; acts in its own
project, the default project, or the one an ``OpenAI-Project`` header names) or a ``project`` key
(acts in its project only, with its owner's role). See docs/admin.md.

``Principal`` is ``domain/principal.py``; it is imported here, where callers have always found it.
"""

from __future__ import annotations

import re
import secrets

from afinar import ids
from afinar.domain.principal import Principal
from afinar.errors import AuthenticationFailed, PermissionDenied
from afinar.services import audit
from afinar.store import admin as admin_repo
from afinar.store import orgs as repo
from afinar.store.db import Database
from afinar.store.tables import ApiKey, Organization, OrgUser, Project, ProjectMember, ServiceAccount

ROLE_RANK = {"none": 0, "reader": 1, "member": 2, "owner": 3}
ORGANIZATION_HEADER = "OpenAI-Organization"
PROJECT_HEADER = "OpenAI-Project"


def lowest(*roles: str) -> str:
    return min(roles, key=lambda r: ROLE_RANK.get(r, 0))


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return slug[:40] or "org"


def new_secret(prefix: str = "sk-afinar-") -> str:
    return prefix + secrets.token_urlsafe(32)


def create_org(db: Database, name: str, api_key: str | None = None) -> tuple[Organization, str]:
    """Create an organisation and its first key; return the key in clear (shown once)."""
    secret = api_key or new_secret()
    now = int(db.now())
    with db.session() as s:
        slug = base = slugify(name)
        n = 1
        while repo.get_org_by_slug(s, slug) is not None:
            n += 1
            slug = f"{base}-{n}"
        org = repo.add_org(s, Organization(id=ids.org_id(), name=name, slug=slug, created_at=now))
        project = Project(id=ids.new_id("proj_"), org_id=org.id, name="Default project", created_at=now)
        s.add(project)
        key = repo.add_key(
            s,
            ApiKey(
                id=ids.new_id("key_"),
                org_id=org.id,
                project_id=project.id,
                name="bootstrap",
                key_hash=repo.hash_key(secret),
                redacted=secret[:6] + "…" + secret[-4:],
                created_at=now,
                kind="admin",
                role="owner",
            ),
        )
    data = {"scopes": [], "kind": "admin"}
    audit.record(db, "api_key.created", org.id, key.id, project_id=project.id, data=data)
    return org, secret


def bootstrap(db: Database, org_name: str, api_key: str) -> str | None:
    """On first start create the default organisation; return a generated key to print once.

    With ``api_key`` given, make sure that key exists (adding it to the default organisation
    when the database already has one), and return None.
    """
    with db.session() as s:
        org = repo.first_org(s)
        known = repo.find_key(s, api_key) if api_key else None
    if org is None:
        _, secret = create_org(db, org_name, api_key or None)
        return None if api_key else secret
    if api_key and known is None:
        with db.session() as s:
            project = repo.default_project(s, org.id)
            repo.add_key(
                s,
                ApiKey(
                    id=ids.new_id("key_"),
                    org_id=org.id,
                    project_id=project.id if project else None,
                    name="bootstrap",
                    key_hash=repo.hash_key(api_key),
                    redacted=api_key[:6] + "…" + api_key[-4:],
                    created_at=int(db.now()),
                    kind="admin",
                    role="owner",
                ),
            )
    return None


def authenticate(
    db: Database, secret: str | None, *, organization: str | None = None, project: str | None = None
) -> Principal:
    """The principal of a bearer key, checked on every request (revocation takes effect at once).

    ``organization``/``project`` are the OpenAI-Organization and OpenAI-Project headers. The key
    decides; a header can only narrow it down or be refused:

    * the organisation header may name the key's organisation (id or slug); another organisation's
      id is refused (401 ``mismatched_organization``);
    * the project header may name a project key's own project, or any active project of an admin
      key's organisation (the project it then acts in); any other project of this server is
      refused (401 ``mismatched_project``);
    * a header that names nothing on this server — typically ``OPENAI_ORG_ID``/``OPENAI_PROJECT_ID``
      left in the environment for api.openai.com — is ignored and listed in
      ``Principal.ignored_headers`` (the API answers with a warning). Another organisation's slug
      counts as naming nothing, so that the header cannot tell which organisations exist.
    """
    if not secret:
        raise AuthenticationFailed("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")
    with db.session() as s:
        key = repo.find_key(s, secret)
        if key is None or key.revoked_at is not None:
            raise AuthenticationFailed("Incorrect API key provided.")
        if key.expires_at is not None and key.expires_at <= db.now():
            raise AuthenticationFailed("This API key has expired.")
        org = repo.get_org(s, key.org_id)
        assert org is not None
        ignored: list[str] = []
        if organization and organization not in (org.id, org.slug):
            if repo.get_org(s, organization) is not None:
                raise AuthenticationFailed(
                    "OpenAI-Organization header should match organization for API key.",
                    code="mismatched_organization",
                )
            ignored.append(ORGANIZATION_HEADER)
        is_admin = key.kind == "admin"
        default_id = admin_repo.default_project_id(s, org.id)
        if project and project != key.project_id:
            owner = admin_repo.project_org_id(s, project)
            if owner is None:
                ignored.append(PROJECT_HEADER)
                project = None
            elif owner != org.id or not is_admin:
                raise AuthenticationFailed(
                    "OpenAI-Project header should match project for API key.", code="mismatched_project"
                )
        project_id = project or key.project_id or default_id
        row = admin_repo.get_project(s, org.id, project_id) if project_id else None
        if row is None:
            raise AuthenticationFailed(
                "The project of this API key no longer exists.", code="mismatched_project"
            )
        if row.archived_at is not None:
            raise PermissionDenied(f"The project {row.id} is archived.", code="project_archived")
        owner_rows = admin_repo.key_owner(s, key, org.id, row.id)
        role, email = owner_role(key, project_id=row.id, owner=owner_rows)
        return Principal(
            org_id=org.id,
            org_slug=org.slug,
            key_id=key.id,
            project_id=row.id,
            role=lowest(key.role or "owner", role),
            is_admin=is_admin,
            owner_type=key.owner_type,
            owner_id=key.owner_id,
            owner_email=email,
            in_default_project=row.id == default_id,
            ignored_headers=tuple(ignored),
        )


def owner_role(
    key: ApiKey,
    *,
    project_id: str,
    owner: tuple[ServiceAccount | None, OrgUser | None, ProjectMember | None],
) -> tuple[str, str | None]:
    """The role the key's owner has in the project (and the owner's email, for the audit log)."""
    account, user, member = owner
    if key.owner_type == "service_account" and key.owner_id:
        return (account.role if account and account.project_id == project_id else "none"), None
    if key.owner_type == "user" and key.owner_id:
        if user is None:
            return "none", None
        if user.role == "owner":  # an organisation owner owns every project
            return "owner", user.email
        return lowest(member.role if member else "none", "reader"), user.email
    return "owner", None
