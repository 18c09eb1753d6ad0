"""``afinar usage``: what the organisation spent, per day and line item (``/v1/organization/costs``)."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from afinar.cli.client import make_client
from afinar.cli.output import JSON_OPTION, print_json, table

if TYPE_CHECKING:
    import openai

DAY = 86_400
_MAX_PAGES = 50


def _date(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


def usage(
    days: int = typer.Option(7, "--days", min=1, max=180, help="How many days back, today included."),
    group_by: str = typer.Option(
        "line_item", "--group-by", help="line_item, project_id or api_key_id; 'none' for totals per day."
    ),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show costs per day (UTC) and line item, with the total."""
    if group_by not in ("line_item", "project_id", "api_key_id", "none"):
        raise typer.BadParameter("must be line_item, project_id, api_key_id or none", param_hint="--group-by")
    client = make_client()
    costs = client.admin.organization.usage.costs
    now = int(time.time())
    start = (now // DAY - (days - 1)) * DAY
    params: dict[str, Any] = {"start_time": start, "end_time": now, "bucket_width": "1d", "limit": days}
    if group_by != "none":
        params["group_by"] = [group_by]
    buckets: list[Any] = []
    page = costs(**params)
    buckets.extend(page.data)
    for _ in range(_MAX_PAGES):
        if not (page.has_more and page.next_page):
            break
        page = costs(**params, page=page.next_page)
        buckets.extend(page.data)
    if json_out:
        print_json({"object": "page", "data": buckets, "has_more": False, "next_page": None})
        return
    rows: list[tuple[str, str, str]] = []
    totals: dict[str, float] = defaultdict(float)
    for bucket in buckets:
        for r in bucket.results:
            amount = getattr(r, "amount", None)
            if amount is None:
                continue
            currency = (amount.currency or "usd").upper()
            value = float(amount.value or 0)
            totals[currency] += value
            label = getattr(r, group_by, None) if group_by != "none" else None
            rows.append((_date(bucket.start_time), label or "all", f"{value:,.6f} {currency}"))
    for currency, value in sorted(totals.items()):
        rows.append(("total", "", f"{value:,.6f} {currency}"))
    if rows:
        column = group_by if group_by != "none" else ""
        table(["day (UTC)", column, "amount"], rows, title=f"Costs since {_date(start)} (UTC)")
    else:
        typer.echo(f"No costs since {_date(start)} (UTC).")
    _summary(client)


def _summary(client: openai.OpenAI) -> None:
    """Month to date and the free training allowance, from ``/v1/afinar/usage`` (Afinar's extension)."""
    import openai

    try:
        summary: Any = client.get("/afinar/usage", cast_to=object)
    except openai.NotFoundError:  # a server without the extension: the costs table is all there is
        return
    if not isinstance(summary, dict):
        return
    month = summary.get("month_to_date") or {}
    amount = month.get("amount") or {}
    if amount:
        currency = str(amount.get("currency") or "usd").upper()
        typer.echo(f"Month to date: {float(amount.get('value') or 0):,.6f} {currency}")
    allowance = summary.get("free_training_allowance") or {}
    for tier in allowance.get("tiers") or []:
        typer.echo(
            f"Free training allowance today ({tier.get('tier')}): {tier.get('remaining_tokens')} of "
            f"{tier.get('tokens_per_day')} tokens left"
        )
