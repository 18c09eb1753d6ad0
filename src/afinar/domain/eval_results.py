"""Counting a run's results, comparing two runs item by item, and judging a gate rule. Pure
(the numbers of the API, the dashboard, the CLI and the fine-tuning eval gate)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

PASS, FAIL, ERROR = "pass", "fail", "error"


def item_status(results: Sequence[dict[str, Any]], errored: bool) -> str:
    if errored:
        return ERROR
    return PASS if results and all(r.get("passed") for r in results) else FAIL


def result_counts(statuses: Iterable[str]) -> dict[str, int]:
    s = list(statuses)
    return {"total": len(s), "passed": s.count(PASS), "failed": s.count(FAIL), "errored": s.count(ERROR)}


def per_criteria(
    criteria: Sequence[dict[str, Any]], items: Iterable[Sequence[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """``[{"testing_criteria": name, "passed", "failed", "errored", "mean_score"}]`` in the eval's
    criteria order. ``errored`` and ``mean_score`` are additive: a result whose grader could not decide
    counts as errored only, never as a failure nor in the mean score (``None`` until one is graded)."""
    counts = {
        c["name"]: {"testing_criteria": c["name"], "passed": 0, "failed": 0, "errored": 0} for c in criteria
    }
    sums: dict[str, float] = dict.fromkeys(counts, 0.0)
    for results in items:
        for r in results:
            name = r.get("name", "")
            row = counts.get(name)
            if row is None:
                continue
            if r.get("errored"):
                row["errored"] += 1
                continue
            row["passed" if r.get("passed") else "failed"] += 1
            score = r.get("score")
            if isinstance(score, int | float) and not isinstance(score, bool):
                sums[name] += float(score)
    out = []
    for name, row in counts.items():
        n = row["passed"] + row["failed"]
        out.append({**row, "mean_score": round(sums[name] / n, 6) if n else None})
    return out


def add_usage(usage: list[dict[str, Any]], model: str, prompt: int, completion: int) -> list[dict[str, Any]]:
    """``per_model_usage`` with one more invocation of ``model``."""
    out = [dict(u) for u in usage]
    row = next((u for u in out if u["model_name"] == model), None)
    if row is None:
        row = {
            "model_name": model,
            "invocation_count": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cached_tokens": 0,
        }
        out.append(row)
    row["invocation_count"] += 1
    row["prompt_tokens"] += prompt
    row["completion_tokens"] += completion
    row["total_tokens"] += prompt + completion
    return out


def graded(counts: dict[str, Any]) -> int:
    """Items (or one criterion's results) that were graded: passed or failed, not errored."""
    return int(counts.get("passed", 0)) + int(counts.get("failed", 0))


def pass_rate(counts: dict[str, Any]) -> float:
    """Items that passed every criterion, over the graded items: errored items are left out."""
    n = graded(counts)
    return int(counts.get("passed", 0)) / n if n else 0.0


def criterion_rate(row: dict[str, Any]) -> float:
    """One criterion's passes over its graded results (errored results are left out)."""
    return pass_rate(row)


# --- comparison ---------------------------------------------------------------------------------


def change(base: str | None, candidate: str | None) -> str:
    if base is None or candidate is None:
        return "missing"
    if base == PASS and candidate != PASS:
        return "regressed"
    if base != PASS and candidate == PASS:
        return "improved"
    return "same"


def _output_text(sample: dict[str, Any] | None) -> str | None:
    out = (sample or {}).get("output") or []
    return out[0].get("content") if out else None


def compare(
    base_counts: dict[str, int],
    candidate_counts: dict[str, int],
    base_criteria: list[dict[str, Any]],
    candidate_criteria: list[dict[str, Any]],
    base_items: list[dict[str, Any]],
    candidate_items: list[dict[str, Any]],
) -> dict[str, Any]:
    """The side-by-side report of two runs of one eval (items matched by ``datasource_item_id``)."""
    base_rate, cand_rate = pass_rate(base_counts), pass_rate(candidate_counts)
    crit_b = {r["testing_criteria"]: r for r in base_criteria}
    per_criterion = []
    for row in candidate_criteria:
        name = row["testing_criteria"]
        b = crit_b.get(name)
        b_rate = criterion_rate(b) if b else None
        c_rate = criterion_rate(row)
        per_criterion.append(
            {
                "testing_criteria": name,
                "base_pass_rate": b_rate,
                "candidate_pass_rate": c_rate,
                "delta": None if b_rate is None else round(c_rate - b_rate, 6),
            }
        )
    by_id = {i["datasource_item_id"]: i for i in base_items}
    cand_by_id = {i["datasource_item_id"]: i for i in candidate_items}
    rows = []
    tally = {"improved": 0, "regressed": 0, "same": 0, "missing": 0}
    for item_id in sorted(set(by_id) | set(cand_by_id)):
        b, c = by_id.get(item_id), cand_by_id.get(item_id)
        kind = change(b["status"] if b else None, c["status"] if c else None)
        tally[kind] += 1
        rows.append(
            {
                "datasource_item_id": item_id,
                "datasource_item": (c or b or {}).get("datasource_item"),
                "change": kind,
                "base": _side(b),
                "candidate": _side(c),
            }
        )
    return {
        "base_pass_rate": base_rate,
        "candidate_pass_rate": cand_rate,
        "pass_rate_delta": round(cand_rate - base_rate, 6),
        "per_testing_criteria": per_criterion,
        "changes": tally,
        "items": rows,
    }


def _side(item: dict[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {
        "status": item["status"],
        "output_text": _output_text(item.get("sample")),
        "results": [
            {
                "name": r.get("name"),
                "passed": r.get("passed"),
                "score": r.get("score"),
                **({"errored": True} if r.get("errored") else {}),
                **({"error": r["error"]} if r.get("error") else {}),
            }
            for r in item.get("results", [])
        ],
    }


# --- gate -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    passed: bool
    tuned_pass_rate: float
    base_pass_rate: float | None
    reasons: list[str]


def judge_gate(
    tuned_rate: float, base_rate: float | None, *, min_pass_rate: float | None, beat_base_by: float | None
) -> Verdict:
    reasons: list[str] = []
    ok = True
    if min_pass_rate is not None:
        if tuned_rate + 1e-9 >= min_pass_rate:
            reasons.append(f"pass rate {tuned_rate:.3f} >= minimum {min_pass_rate:.3f}")
        else:
            ok = False
            reasons.append(f"pass rate {tuned_rate:.3f} < minimum {min_pass_rate:.3f}")
    if beat_base_by is not None:
        base = base_rate or 0.0
        margin = tuned_rate - base
        if margin + 1e-9 >= beat_base_by:
            reasons.append(f"beats the base ({base:.3f}) by {margin:+.3f} >= {beat_base_by:+.3f}")
        else:
            ok = False
            reasons.append(f"beats the base ({base:.3f}) by {margin:+.3f} < required {beat_base_by:+.3f}")
    return Verdict(ok, tuned_rate, base_rate, reasons)
