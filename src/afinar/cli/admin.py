"""``afinar admin``: operator commands on the configured database (no server needed).

``afinar admin orgs create NAME`` creates an organisation with its default project and prints
its first admin key once. Keys, users and the audit chain are managed the same way; everything
an organisation's admins can do over HTTP is also in ``client.admin.organization`` (docs/admin.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from afinar.cli.output import JSON_OPTION, fail, fields, out, print_json, table, when
from afinar.config import Settings

if TYPE_CHECKING:
    from afinar.services.container import Container

app = typer.Typer(
    help="Operator commands: organisations, keys, users, the audit log, workers.", no_args_is_help=True
)
orgs = typer.Typer(help="Organisations.", no_args_is_help=True)
keys = typer.Typer(help="API keys (shown once when created; stored hashed).", no_args_is_help=True)
users = typer.Typer(help="Users of an organisation.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", no_args_is_help=True)
app.add_typer(orgs, name="orgs")
app.add_typer(keys, name="keys")
app.add_typer(users, name="users")
app.add_typer(audit_app, name="audit")

T = TypeVar("T")

ORG_OPTION = typer.Option(..., "--org", help="Organisation id (org-…) or slug.")


@contextmanager
def _container() -> Iterator[Container]:
    from afinar.services.container import Container

    c = Container(Settings())
    try:
        c.migrate()
        yield c
    finally:
        c.close()


def _org_id(c: Container, ref: str) -> str:
    from afinar.store import orgs as repo

    with c.db.session() as s:
        org = repo.get_org(s, ref) or repo.get_org_by_slug(s, ref)
    if org is None:
        fail("not_found", f"no organisation {ref!r}")
    return org.id


def _run(fn: Callable[[], T]) -> T:
    from afinar.errors import AfinarError, Conflict, NotFound

    try:
        return fn()
    except AfinarError as exc:
        kind = "not_found" if isinstance(exc, NotFound) else "conflict" if isinstance(exc, Conflict) else None
        fail(exc.code or kind or "invalid_request", exc.message)


@orgs.command("create")
def orgs_create(
    name: str = typer.Argument(..., help="The organisation's name."), json_out: bool = JSON_OPTION
) -> None:
    """Create an organisation and its default project; print its first admin key (shown once)."""
    from afinar.services.orgs import create_org

    with _container() as c:
        org, secret = create_org(c.db, name)
    if json_out:
        print_json({"id": org.id, "slug": org.slug, "name": org.name, "api_key": secret})
        return
    fields([("organisation", org.id), ("slug", org.slug), ("name", org.name)])
    out().print(f"Admin API key (shown once, keep it):\n  {secret}", markup=False)


@orgs.command("list")
def orgs_list(json_out: bool = JSON_OPTION) -> None:
    """List organisations."""
    from afinar.store.admin import all_orgs

    with _container() as c, c.db.session() as s:
        rows = [(o.id, o.slug, o.name, o.created_at) for o in all_orgs(s)]
    if json_out:
        print_json([{"id": i, "slug": sl, "name": n, "created_at": t} for i, sl, n, t in rows])
        return
    table(["id", "slug", "name", "created"], [(i, sl, n, when(t)) for i, sl, n, t in rows])


@orgs.command("delete")
def orgs_delete(
    org: str = typer.Argument(..., help="Organisation id (org-…) or slug."),
    yes: bool = typer.Option(False, "--yes", help="Confirm: this destroys the organisation's data for good."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Delete an organisation: destroy its data key first (crypto-shredding), then all its data.

    Safe to run again after an interruption (docs/admin.md, "Deleting an organisation").
    """
    from afinar.store import orgs as repo

    if not yes:
        fail("confirmation_required", f"deleting {org} destroys all its data for good; add --yes to confirm")
    with _container() as c:
        with c.db.session() as s:
            row = repo.get_org(s, org) or repo.get_org_by_slug(s, org)
        org_id = row.id if row is not None else org  # gone already: finish an interrupted deletion
        report = _run(lambda: c.erasure.delete_org(org_id))
    if json_out:
        print_json(report.to_dict())
        return
    fields(
        [
            ("organisation", report.org_id),
            ("data key", "destroyed"),
            ("api keys deleted", str(report.api_keys_deleted)),
            ("jobs cancelled", str(len(report.jobs_cancelled))),
            ("blobs removed", str(report.blobs_removed)),
            ("rows deleted", str(sum(report.rows_deleted.values()))),
        ]
    )


@orgs.command("settings")
def orgs_settings(
    org: str = typer.Argument(..., help="Organisation id (org-…) or slug."), json_out: bool = JSON_OPTION
) -> None:
    """Show an organisation's settings (the object of GET /v1/afinar/organization/settings)."""
    from afinar.api.schemas.settings import settings_object

    with _container() as c:
        settings = settings_object(_run(lambda: c.org_settings.get(_org_id(c, org))))
    if json_out:
        print_json(settings)
        return
    fields([(k, str(v)) for k, v in settings.items() if k != "object"])


@orgs.command("moderation")
def orgs_moderation(
    org: str = typer.Argument(..., help="Organisation id (org-…) or slug."),
    state: str = typer.Argument(..., help="on or off."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Switch runtime moderation of chat completions on or off for an organisation (audited)."""
    from afinar.api.schemas.settings import settings_object
    from afinar.services.org_settings import SettingsUpdate

    if state not in ("on", "off"):
        fail("invalid_request", f"state must be 'on' or 'off', not {state!r}")
    change = SettingsUpdate({"runtime_moderation": state == "on"})
    with _container() as c:
        org_id = _org_id(c, org)
        settings = settings_object(_run(lambda: c.org_settings.update(org_id, change)))
    if json_out:
        print_json(settings)
        return
    out().print(f"runtime moderation {state} for {org_id}", markup=False)


@orgs.command("retention")
def orgs_retention(
    org: str = typer.Argument(..., help="Organisation id (org-…) or slug."),
    days: str = typer.Argument(..., help="Days to keep files, 'off' (forever) or 'default'."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Set how long an organisation's files are kept; older ones become tombstones (audited)."""
    from afinar.api.schemas.settings import parse_days

    value: int | None
    if days == "off":
        value = 0
    elif days == "default":
        value = None
    elif days.isdigit() and int(days) > 0:
        value = int(days)
    else:
        fail("invalid_request", f"DAYS must be a positive number, 'off' or 'default', not {days!r}")
    with _container() as c:
        org_id = _org_id(c, org)
        stored = _run(lambda: c.retention.set_days(org_id, parse_days(value)))
        effective = c.retention.effective_days(stored)
    if json_out:
        print_json({"id": org_id, "file_retention_days": stored, "effective_days": effective})
        return
    kept = f"{effective} days" if effective else "forever"
    out().print(f"files of {org_id} are kept {kept}", markup=False)


@app.command("export")
def export(
    org: str = typer.Argument(..., help="Organisation id (org-…) or slug."),
    out_path: Path = typer.Option(..., "--out", help="The archive to write (a .zip, mode 0600)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Write everything an organisation owns to one archive: rows as JSONL, file contents, adapters."""
    from afinar.api.schemas.models import model_card_object

    with _container() as c:
        result = _run(lambda: c.exporter.export(_org_id(c, org), out_path, card=model_card_object))
    if json_out:
        print_json({"path": str(result.path), **result.manifest})
        return
    counts = result.manifest["counts"]
    fields([("archive", str(result.path)), *((k, str(v)) for k, v in counts.items())])
    for item in result.skipped:
        out().print(f"skipped {item['member']}: {item['reason']}", markup=False)


@app.command("workers")
def workers(json_out: bool = JSON_OPTION) -> None:
    """List the workers: lanes, devices, last heartbeat (stale when silent), jobs held."""
    with _container() as c:
        rows = c.workers.states()
    if json_out:
        print_json(
            [
                {
                    "name": w.name,
                    "host": w.host,
                    "lanes": w.lanes,
                    "devices": w.devices.to_json(),
                    "started_at": w.started_at,
                    "heartbeat_at": int(w.heartbeat_at),
                    "live": w.live,
                    "jobs_held": w.jobs_held,
                }
                for w in rows
            ]
        )
        return
    if not rows:
        out().print("no workers registered", markup=False)
        return
    table(
        ["name", "lanes", "devices", "heartbeat", "jobs"],
        [
            (
                w.name,
                ", ".join(f"{lane} {n}" for lane, n in w.lanes.items()),
                w.devices.summary(),
                when(int(w.heartbeat_at)) + ("" if w.live else " (stale)"),
                w.jobs_held,
            )
            for w in rows
        ],
    )


@keys.command("create")
def keys_create(
    org: str = ORG_OPTION,
    admin: bool = typer.Option(False, "--admin", help="An admin key (owner; may call /v1/organization/*)."),
    project: str | None = typer.Option(None, "--project", help="Project id (default: the default project)."),
    user: str | None = typer.Option(None, "--user", help="The user (user-…) owning a project key."),
    reader: bool = typer.Option(False, "--reader", help="Read-only (scope api.all.read)."),
    name: str = typer.Option("cli", "--name", help="A name for the key."),
    expires_in: int | None = typer.Option(None, "--expires-in", min=1, help="Seconds until it expires."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create an API key and print it once."""
    with _container() as c:
        org_id = _org_id(c, org)
        keys_service = c.api_keys
        expires_at = int(c.clock()) + expires_in if expires_in else None
        if admin:
            made = _run(
                lambda: keys_service.create_key(
                    org_id, kind="admin", name=name, role="owner", expires_at=expires_at
                )
            )
        else:
            project_id = project or c.projects.default_project_id(org_id) or ""
            _run(lambda: c.projects.project(org_id, project_id, active=True))
            if user is not None:
                _run(lambda: c.users.user(org_id, user))
            made = _run(
                lambda: keys_service.create_key(
                    org_id,
                    kind="project",
                    name=name,
                    project_id=project_id,
                    role="reader" if reader else None,
                    owner_type="user" if user else None,
                    owner_id=user,
                    expires_at=expires_at,
                )
            )
    key, secret = made
    if json_out:
        print_json({"id": key.id, "kind": key.kind, "project_id": key.project_id, "api_key": secret})
        return
    fields([("key", key.id), ("kind", key.kind), ("project", key.project_id or "-")])
    out().print(f"API key (shown once, keep it):\n  {secret}", markup=False)


@keys.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key's id (key_…)."), org: str = ORG_OPTION
) -> None:
    """Revoke a key: its next request is refused."""
    with _container() as c:
        org_id = _org_id(c, org)
        _run(lambda: c.api_keys.revoke_key(org_id, key_id))
    out().print(f"revoked {key_id}", markup=False)


@users.command("add")
def users_add(
    email: str = typer.Argument(..., help="The user's email address."),
    org: str = ORG_OPTION,
    name: str = typer.Option("", "--name"),
    role: str = typer.Option("reader", "--role", help="owner or reader."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Add a user to an organisation (then: projects.users.create, and `keys create --user`)."""
    with _container() as c:
        org_id = _org_id(c, org)
        user = _run(lambda: c.users.add_user(org_id, email, name=name, role=role))
    if json_out:
        print_json({"id": user.id, "email": user.email, "role": user.role})
        return
    out().print(f"{user.id} {user.email} {user.role}", markup=False)


@audit_app.command("verify")
def audit_verify(org: str = ORG_OPTION) -> None:
    """Check the organisation's audit chain; exit 1 at the first entry that does not verify."""
    from afinar.services import audit

    with _container() as c:
        count, bad = audit.verify(c.db, _org_id(c, org))
    if bad is not None:
        fail("audit_chain_broken", f"{count} entries verify; the chain breaks at {bad}")
    out().print(f"audit chain intact: {count} entries", markup=False)
