"""What every dashboard page shares: the signed-in viewer, CSRF checks, rendering, error pages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from afinar.api.errors import status_for
from afinar.crypto.keys import load_master_key
from afinar.dashboard.session import COOKIE, DashboardSession, SessionStore, check_csrf, cookie_secret
from afinar.dashboard.templating import render
from afinar.errors import AfinarError, AuthenticationFailed, PermissionDenied
from afinar.services import access, audit
from afinar.services.container import Container
from afinar.services.orgs import Principal, authenticate

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SignInRequired(Exception):
    """No valid session: send the browser to the sign-in page."""


class CsrfRejected(Exception):
    """A POST without the session's CSRF token, or from another origin."""


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    session: DashboardSession

    @property
    def org_id(self) -> str:
        return self.principal.org_id


def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


def sessions(request: Request) -> SessionStore:
    store: SessionStore | None = getattr(request.app.state, "dashboard_sessions", None)
    if store is None:
        c = container(request)
        secret = cookie_secret(load_master_key(c.settings))  # the same on every node
        store = SessionStore(secret, c.shared_state.sessions, c.db.now)  # follows a swapped clock
        request.app.state.dashboard_sessions = store
    return store


async def viewer(request: Request) -> Viewer:
    """The signed-in viewer, bound to the request like an API caller: audit actor and project scope.

    Async on purpose: the bindings are context variables, which must reach the endpoint.
    """
    store = sessions(request)
    session = await run_in_threadpool(store.get, request.cookies.get(COOKIE))
    if session is None:
        raise SignInRequired
    try:
        principal = await run_in_threadpool(authenticate, container(request).db, session.api_key)
    except AuthenticationFailed:
        await run_in_threadpool(store.drop, session.id)
        raise SignInRequired from None
    audit.bind(principal)
    access.bind_scope(principal)
    return Viewer(principal, session)


# Dashboard POSTs that change nothing (a reader may use them).
READ_ONLY_POSTS = ("/playground", "/jobs/estimate", "/signout")


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def checked_viewer(request: Request) -> Viewer:
    """The viewer of a state-changing request: same origin and the session's CSRF token."""
    v = await viewer(request)
    if v.principal.role not in ("owner", "member") and not request.url.path.startswith(READ_ONLY_POSTS):
        raise PermissionDenied(
            f"This key's role ({v.principal.role}) may look but not change anything.",
            code="insufficient_permissions",
        )
    token = request.headers.get("x-csrf-token")
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get("csrf_token")
        token = value if isinstance(value, str) else None
    if not same_origin(request) or not check_csrf(v.session, token):
        raise CsrfRejected
    return v


def default_model(request: Request, wanted: str | None = None) -> str:
    """The wanted base model if the catalogue has it, else the configured default, else the first."""
    c = container(request)
    ids = c.catalog.ids()
    for candidate in (wanted, c.settings.default_model):
        if candidate in ids:
            return str(candidate)
    return ids[0]


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    v: Viewer | None = context.pop("viewer", None)
    html = render(
        template,
        request=request,
        path=request.url.path,
        csrf=v.session.csrf if v else "",
        org=v.principal.org_slug if v else "",
        admin=v.principal.is_admin if v else False,  # the nav's admin-only pages (workers)
        **context,
    )
    return HTMLResponse(html, status)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _is_fragment(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _signin_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = "/signin?next=" + quote(target, safe="")
    if _is_fragment(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    if request.method != "GET":
        url = "/signin"
    return redirect(url)


def _error(request: Request, status: int, title: str, message: str) -> Response:
    if _is_fragment(request) or request.headers.get("accept", "").startswith("application/json"):
        return HTMLResponse(render("_error.html", title=title, message=message), status)
    return HTMLResponse(
        render("error.html", request=request, path=request.url.path, title=title, message=message), status
    )


class DashboardRoute(APIRoute):
    """Turns sign-in, CSRF and domain errors into pages, and adds the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                response = _signin_redirect(request)
            except CsrfRejected:
                response = _error(
                    request,
                    403,
                    "Request refused",
                    "This form has expired or came from another site. Reload the page and try again.",
                )
            except AfinarError as exc:
                response = _error(request, status_for(exc), "Something is not right", exc.message)
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return route
