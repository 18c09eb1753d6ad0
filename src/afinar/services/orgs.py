"""Organisations and API keys: bootstrap on first start, and authentication of a bearer key."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from afinar import ids
from afinar.errors import AuthenticationFailed
from afinar.store import orgs as repo
from afinar.store.db import Database
from afinar.store.tables import ApiKey, Organization, Project


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organisation (and key) every object is scoped to."""

    org_id: str
    org_slug: str
    key_id: str
    project_id: str | None = None


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return slug[:40] or "org"


def new_secret() -> str:
    return "sk-afinar-" + secrets.token_urlsafe(32)


def create_org(db: Database, name: str, api_key: str | None = None) -> tuple[Organization, str]:
    """Create an organisation and its first key; return the key in clear (shown once)."""
    secret = api_key or new_secret()
    now = int(time.time())
    with db.session() as s:
        slug = base = slugify(name)
        n = 1
        while repo.get_org_by_slug(s, slug) is not None:
            n += 1
            slug = f"{base}-{n}"
        org = repo.add_org(s, Organization(id=ids.org_id(), name=name, slug=slug, created_at=now))
        project = Project(id=ids.new_id("proj_"), org_id=org.id, name="Default project", created_at=now)
        s.add(project)
        repo.add_key(
            s,
            ApiKey(
                id=ids.new_id("key_"),
                org_id=org.id,
                project_id=project.id,
                name="bootstrap",
                key_hash=repo.hash_key(secret),
                redacted=secret[:6] + "…" + secret[-4:],
                created_at=now,
            ),
        )
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
                    created_at=int(time.time()),
                ),
            )
    return None


def authenticate(db: Database, secret: str | None) -> Principal:
    if not secret:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
        )
    with db.session() as s:
        key = repo.find_key(s, secret)
        if key is None or key.revoked_at is not None:
            raise AuthenticationFailed("Incorrect API key provided.")
        if key.expires_at is not None and key.expires_at <= time.time():
            raise AuthenticationFailed("This API key has expired.")
        org = repo.get_org(s, key.org_id)
        assert org is not None
        return Principal(org_id=org.id, org_slug=org.slug, key_id=key.id, project_id=key.project_id)
