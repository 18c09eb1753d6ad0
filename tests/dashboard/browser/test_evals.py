"""The evals pages in headless Chromium against a real ``afinar serve``: from the nav to a comparison.

Two ``jsonl`` runs of one eval (their samples are given, so the embedded worker grades them at
once) → the eval page lists both → pick them with the keyboard → pass rates side by side and the
improved items; then the same page at phone width.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.support.dashboard import BASE, CANDIDATE, EXACT, ITEMS, LAPTOP, PHONE, POLITE, assert_accessible
from tests.support.evals import ITEM_SCHEMA, jsonl_source
from tests.support.server import API_KEY, Server
from tests.support.wait import wait_for


def _seed(srv: Server) -> tuple[Any, Any, Any]:
    client = srv.client()
    ev = client.evals.create(
        name="shop answers",
        data_source_config={"type": "custom", "item_schema": ITEM_SCHEMA},
        testing_criteria=[EXACT, POLITE],  # type: ignore[list-item]
    )
    runs = []
    for name, outputs in (("base", BASE), ("candidate", CANDIDATE)):
        given: Any = jsonl_source(list(zip(ITEMS, outputs, strict=True)))
        runs.append(client.evals.runs.create(ev.id, data_source=given, name=name))
    wait_for(
        lambda: all(client.evals.runs.retrieve(r.id, eval_id=ev.id).status == "completed" for r in runs),
        timeout=60,
        interval=0.3,
        message="the embedded worker did not grade the runs",
    )
    return ev, runs[0], runs[1]


def test_compare_two_runs_in_the_browser(browser: Any, dashboard_server: Server, screenshots: Path) -> None:
    ev, base, cand = _seed(dashboard_server)
    root = f"http://127.0.0.1:{dashboard_server.port}"
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)

    page.goto(root + "/signin")
    page.fill("#api_key", API_KEY)
    page.keyboard.press("Enter")
    page.wait_for_url(root + "/")

    page.click("nav >> text=Evals")
    page.wait_for_url(root + "/evals")
    assert "shop answers" in page.inner_text("main")
    assert_accessible(page)
    page.click("text=shop answers")
    page.wait_for_url(f"{root}/evals/{ev.id}")
    assert page.inner_text(f'tr[data-run="{cand.id}"] [data-pass-rate]') == "50.0%"
    assert page.inner_text(f'tr[data-run="{base.id}"] [data-pass-rate]') == "25.0%"
    assert_accessible(page)

    # Choose the runs with the keyboard and submit the form with Enter.
    page.focus("#base_run_id")
    page.select_option("#base_run_id", base.id)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "candidate_run_id"
    page.select_option("#candidate_run_id", cand.id)
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert re.search(rf"/evals/{ev.id}/compare\?base_run_id={base.id}&candidate_run_id={cand.id}", page.url)

    overall = page.locator('tr[data-criterion=""]')
    assert overall.locator("[data-base]").inner_text() == "25.0%"
    assert overall.locator("[data-candidate]").inner_text() == "50.0%"
    assert overall.locator("[data-delta]").inner_text() == "+25.0 pts"
    assert page.locator('tr[data-criterion="exact"] [data-candidate]').inner_text() == "75.0%"
    improved = page.locator('article[data-item="0"]')
    assert "Improved" in improved.inner_text() and "Eight inches, thanks" in improved.inner_text()
    assert page.locator('article[data-item="2"]').count() == 0  # unchanged items hidden by default
    assert_accessible(page)
    page.screenshot(path=str(screenshots / "09-eval-compare.png"), full_page=True)

    with page.expect_navigation():
        page.click("nav[aria-label='Which items'] >> text=Regressed")
    shown = page.eval_on_selector_all("article.item-diff", "els => els.map(e => e.dataset.item)")
    assert shown == ["1"] and page.get_attribute("[aria-current='true']", "href").endswith("show=regressed")

    page.set_viewport_size(PHONE)
    page.wait_for_function("document.documentElement.scrollWidth <= window.innerWidth + 1", timeout=5_000)
    assert_accessible(page)
    page.screenshot(path=str(screenshots / "10-eval-compare-phone.png"), full_page=True)
    assert problems == []
    context.close()
