"""Sign in with an API key, sign out."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Form, Request, Response

from afinar.dashboard.deps import (
    DashboardRoute,
    SignInRequired,
    Viewer,
    checked_viewer,
    container,
    page,
    redirect,
    same_origin,
    sessions,
    viewer,
)
from afinar.dashboard.session import COOKIE, SESSION_SECONDS, SIGNIN_COOKIE
from afinar.errors import AuthenticationFailed
from afinar.services.orgs import authenticate

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a full URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _signin_page(request: Request, next_url: str, error: str = "", status: int = 200) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = page(
        request,
        "signin.html",
        status,
        token=sessions(request).signin_token(nonce),
        next=next_url,
        error=error,
    )
    secure = request.url.scheme == "https"
    response.set_cookie(SIGNIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict", secure=secure)
    return response


@router.get("/signin")
async def signin_form(request: Request, next: str = "/") -> Response:
    try:
        await viewer(request)
        return redirect(safe_next(next))
    except SignInRequired:
        return _signin_page(request, safe_next(next))


@router.post("/signin")
def signin(
    request: Request, api_key: str = Form(""), token: str = Form(""), next: str = Form("/")
) -> Response:
    store = sessions(request)
    next_url = safe_next(next)
    if not same_origin(request) or not store.check_signin_token(request.cookies.get(SIGNIN_COOKIE), token):
        return _signin_page(request, next_url, "The sign-in form expired. Please try again.", 403)
    try:
        principal = authenticate(container(request).db, api_key.strip())
    except AuthenticationFailed:
        return _signin_page(request, next_url, "That API key was not accepted. Check it and try again.", 401)
    session = store.create(api_key.strip(), org_id=principal.org_id, key_id=principal.key_id)
    response = redirect(next_url)
    response.set_cookie(
        COOKIE,
        store.sign(session.id),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(SIGNIN_COOKIE)
    return response


@router.post("/signout")
def signout(request: Request, v: Viewer = Depends(checked_viewer)) -> Response:
    sessions(request).drop(v.session.id)
    response = redirect("/signin")
    response.delete_cookie(COOKIE, path="/")
    return response
