"""Organisations and their API keys (stored as SHA-256 hashes, never in clear)."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from afinar.store.tables import ApiKey, Organization, Project


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_org(s: Session, org_id: str) -> Organization | None:
    return s.scalar(select(Organization).where(Organization.id == org_id))


def get_org_by_slug(s: Session, slug: str) -> Organization | None:
    return s.scalar(select(Organization).where(Organization.slug == slug))


def first_org(s: Session) -> Organization | None:
    return s.scalar(select(Organization).order_by(Organization.seq).limit(1))


def add_org(s: Session, org: Organization) -> Organization:
    s.add(org)
    s.flush()
    return org


def add_key(s: Session, key: ApiKey) -> ApiKey:
    s.add(key)
    s.flush()
    return key


def find_key(s: Session, secret: str) -> ApiKey | None:
    return s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))


def default_project(s: Session, org_id: str) -> Project | None:
    return s.scalar(select(Project).where(Project.org_id == org_id).order_by(Project.seq).limit(1))
