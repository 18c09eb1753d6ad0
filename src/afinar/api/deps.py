"""Request dependencies: the container and the authenticated principal."""

from __future__ import annotations

from fastapi import Request

from afinar.services.container import Container
from afinar.services.orgs import Principal, authenticate


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    token = secret.strip() if scheme.lower() == "bearer" else ""
    return authenticate(get_container(request).db, token)
