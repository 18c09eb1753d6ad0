"""``afinar evals``: list evals and their runs, follow a run, compare two runs side by side."""

from __future__ import annotations

import time
from typing import Any

import typer

from afinar.cli.client import make_client
from afinar.cli.output import JSON_OPTION, fail, note, print_json, table, when

app = typer.Typer(
    help="Evals: list, runs, wait for a run, compare a base and a tuned run.", no_args_is_help=True
)


def _rate(counts: dict[str, Any]) -> str:
    total, passed = int(counts.get("total") or 0), int(counts.get("passed") or 0)
    return f"{passed}/{total} ({passed / total:.1%})" if total else "-"


@app.command("list")
def list_evals(json_out: bool = JSON_OPTION) -> None:
    """List the organisation's evals."""
    evals = list(make_client().evals.list(limit=100))
    if json_out:
        print_json({"object": "list", "data": evals})
        return
    table(
        ["id", "name", "criteria", "created"],
        [(e.id, e.name, ", ".join(c.name for c in e.testing_criteria), when(e.created_at)) for e in evals],
    )


@app.command()
def runs(
    eval_id: str = typer.Argument(..., help="The eval (eval_...)."), json_out: bool = JSON_OPTION
) -> None:
    """List the runs of an eval, with their pass rates."""
    data = list(make_client().evals.runs.list(eval_id, limit=100))
    if json_out:
        print_json({"object": "list", "data": data})
        return
    table(
        ["id", "model", "status", "passed", "created"],
        [(r.id, r.model, r.status, _rate(r.result_counts.model_dump()), when(r.created_at)) for r in data],
    )


@app.command()
def wait(
    eval_id: str = typer.Argument(..., help="The eval (eval_...)."),
    run_id: str = typer.Argument(..., help="The run (evalrun_...)."),
    timeout: float = typer.Option(3600, help="Give up after this many seconds."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Wait until a run has finished; exit 1 unless it completed."""
    client = make_client()
    deadline = time.monotonic() + timeout
    while True:
        run = client.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status in ("completed", "failed", "canceled") or time.monotonic() > deadline:
            break
        progress = getattr(run, "progress", None) or {}
        note(f"{run.status}: {progress.get('completed', 0)}/{progress.get('total', '?')} items")
        time.sleep(2)
    if json_out:
        print_json(run)
    else:
        note(f"{run.id}: {run.status}, passed {_rate(run.result_counts.model_dump())}")
    if run.status != "completed":
        fail(run.status, (run.error.message if run.error else None) or f"the run is {run.status}")


@app.command()
def compare(
    eval_id: str = typer.Argument(..., help="The eval (eval_...)."),
    base_run: str = typer.Argument(..., help="The base model's run (evalrun_...)."),
    candidate_run: str = typer.Argument(..., help="The tuned model's run (evalrun_...)."),
    changed_only: bool = typer.Option(False, "--changed-only", help="List only items whose outcome changed."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Side by side: pass rate per criterion and the items each model got right or wrong."""
    report: dict[str, Any] = make_client().get(
        f"/afinar/evals/{eval_id}/compare",
        cast_to=dict,
        options={
            "params": {
                "base_run_id": base_run,
                "candidate_run_id": candidate_run,
                "changed_only": str(changed_only).lower(),
            }
        },
    )
    if json_out:
        print_json(report)
        return
    base, cand = report["base"], report["candidate"]
    table(
        ["criterion", f"base ({base['model']})", f"tuned ({cand['model']})", "delta"],
        [
            (
                "all criteria (items)",
                f"{report['base_pass_rate']:.1%}",
                f"{report['candidate_pass_rate']:.1%}",
                f"{report['pass_rate_delta']:+.1%}",
            )
        ]
        + [
            (
                r["testing_criteria"],
                "-" if r["base_pass_rate"] is None else f"{r['base_pass_rate']:.1%}",
                f"{r['candidate_pass_rate']:.1%}",
                "-" if r["delta"] is None else f"{r['delta']:+.1%}",
            )
            for r in report["per_testing_criteria"]
        ],
        title=f"{eval_id}: {base['run_id']} vs {cand['run_id']}",
    )
    changes = report["changes"]
    note(f"improved {changes['improved']}, regressed {changes['regressed']}, same {changes['same']}")
    rows = [i for i in report["items"] if not changed_only or i["change"] != "same"]
    table(
        ["item", "change", "base", "tuned"],
        [(i["datasource_item_id"], i["change"], _side(i["base"]), _side(i["candidate"])) for i in rows],
    )


def _side(side: dict[str, Any] | None) -> str:
    if side is None:
        return "-"
    text = (side.get("output_text") or "").replace("\n", " ")
    return f"{side['status']}: {text[:60]}"
