"""The dashboard as a person uses it, in headless Chromium against a real ``afinar serve``.

Sign in → drop the skateboard example on the upload zone → read its report → create a job →
watch the loss chart gain points → open the playground and get an answer from the tuned model.
Screenshots of every step are saved (see the ``screenshots`` fixture).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.support.dashboard import LAPTOP, PHONE, assert_accessible
from tests.support.server import API_KEY, Server
from tests.support.wait import wait_for

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "skateboard"
DROP_FILE = """([selector, name, text]) => {
  const zone = document.querySelector(selector);
  const dt = new DataTransfer();
  dt.items.add(new File([text], name, {type: 'application/jsonl'}));
  for (const type of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
  }
}"""


def chart_points(page: Any) -> int:
    return int(page.get_attribute("[data-loss-chart]", "data-points") or 0)


def test_sign_in_upload_train_and_chat(browser: Any, dashboard_server: Server, screenshots: Path) -> None:
    base = f"http://127.0.0.1:{dashboard_server.port}"
    context = browser.new_context(viewport=LAPTOP, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on(
        "request", lambda req: None if req.url.startswith(base) else problems.append(f"off-site: {req.url}")
    )

    # Sign in, with the keyboard only.
    page.goto(base + "/")
    assert page.url.startswith(base + "/signin")
    assert_accessible(page)
    page.screenshot(path=str(screenshots / "01-signin.png"))
    page.focus("#api_key")
    page.keyboard.type(API_KEY)
    page.keyboard.press("Enter")
    page.wait_for_url(base + "/")
    cookie = next(c for c in context.cookies() if c["name"] == "afinar_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and API_KEY not in cookie["value"]

    # Upload the skateboard example by dropping it on the upload zone.
    page.click("nav >> text=Files")
    page.select_option("#upload-model", "tiny-llama")
    assert_accessible(page)
    text = (EXAMPLES / "train.jsonl").read_text()
    with page.expect_navigation():
        page.evaluate(DROP_FILE, ["[data-dropzone]", "skateboard-train.jsonl", text])
    assert re.search(r"/files/file-[\w-]+\?model=tiny-llama$", page.url)
    training_file = page.url.split("/files/")[1].split("?")[0]

    # Its report: counts, every warning with its line, and the estimate before any job.
    report = page.wait_for_selector("[data-report]", timeout=60_000)
    summary = report.inner_text()
    assert "Ready to train" in summary and "60 examples" in summary
    first_row = page.inner_text(".problems tbody tr:first-child")
    assert re.match(r"\s*\d+\s+Example \d+ has \d+ tokens", first_row)
    assert "Billable tokens" in summary and "Time" in summary
    assert_accessible(page)
    page.screenshot(path=str(screenshots / "02-file-report.png"), full_page=True)

    # A validation file through the file picker.
    page.goto(base + "/files")
    page.set_input_files("#file-input", str(EXAMPLES / "validation.jsonl"))
    with page.expect_navigation():
        page.click("text=Upload and check")
    validation_file = page.url.split("/files/")[1].split("?")[0]

    # Create a job from the first file's page; the estimate follows the hyperparameters.
    page.goto(f"{base}/files/{training_file}?model=tiny-llama")
    page.click("text=Create a job with this file")
    page.wait_for_url(re.compile(r".*/jobs/new\?.*"))
    assert page.input_value("#training_file") == training_file
    page.select_option("#validation_file", validation_file)
    page.fill("#n_epochs", "2")
    page.fill("#batch_size", "4")
    page.fill("#suffix", "skate")
    page.fill("#seed", "42")
    page.locator("#seed").blur()
    page.wait_for_function(
        "() => /Steps\\s*30/.test(document.querySelector('#estimate').innerText)", timeout=60_000
    )
    assert_accessible(page)
    page.screenshot(path=str(screenshots / "03-new-job.png"), full_page=True)
    with page.expect_navigation():
        page.click("text=Create job")
    assert re.search(r"/jobs/ftjob-[\w-]+$", page.url)
    job_url = page.url

    # Watch the loss chart gain points while the job runs; progress and ETA update too.
    wait_for(lambda: chart_points(page) >= 1, timeout=120, interval=0.25)
    first = chart_points(page)
    wait_for(lambda: chart_points(page) >= first + 3, timeout=60, interval=0.25)
    assert page.get_attribute("#job-live", "data-status") == "running"
    assert int(page.inner_text("#job-live [data-step]")) >= first
    assert_accessible(page)
    wait_for(
        lambda: chart_points(page) >= 15 or page.get_attribute("#job-live", "data-status") != "running",
        timeout=60,
        interval=0.25,
    )
    page.screenshot(path=str(screenshots / "job-page-running.png"), full_page=True)

    page.wait_for_selector('#job-live[data-status="succeeded"]', timeout=180_000)
    wait_for(lambda: page.get_attribute("[data-loss-chart]", "data-done") == "1", timeout=10, interval=0.25)
    series = json.loads(context.request.get(job_url + "/metrics.json").text())
    assert chart_points(page) == len(series["steps"]) == 30
    assert any(v is not None for v in series["valid_loss"])
    assert "Checkpoint" in page.inner_text("#job-events")
    page.screenshot(path=str(screenshots / "job-page-succeeded.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.wait_for_function("document.documentElement.scrollWidth <= window.innerWidth + 1", timeout=5_000)
    assert_accessible(page)
    page.screenshot(path=str(screenshots / "05-job-phone.png"), full_page=True)
    page.set_viewport_size(LAPTOP)

    # The playground: the same prompt to the base model and the tuned model, streamed side by side.
    page.click("text=Try it in the playground")
    page.wait_for_url(re.compile(r".*/playground\?model=ft.*"))
    tuned = page.input_value("#right-model")
    assert tuned.startswith("ft:tiny-llama:") and ":skate:" in tuned
    assert page.input_value("#left-model") == "tiny-llama"
    page.fill("#prompt", "Which wheels should I buy for street skating?")
    page.fill("#max_tokens", "24")
    assert_accessible(page)
    page.click("text=Run on both")
    page.wait_for_selector('[data-answer="left"][data-done]', timeout=120_000)
    page.wait_for_selector('[data-answer="right"][data-done]', timeout=120_000)
    for side in ("left", "right"):
        status = page.inner_text(f'[data-answer-status="{side}"]')
        assert re.match(r"\d+ tokens", status), status
        assert page.evaluate(f"document.querySelector('[data-answer=\"{side}\"]').textContent.length") > 0
    page.screenshot(path=str(screenshots / "06-playground.png"), full_page=True)

    # The model card offers the adapter for download.
    page.goto(f"{base}/models/{tuned}")
    with page.expect_download() as download:
        page.click("text=Download adapter (.zip)")
    assert download.value.suggested_filename.endswith("-adapter.zip")
    page.screenshot(path=str(screenshots / "07-model-card.png"), full_page=True)
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("text=Delete model")
    assert page.url == base + "/models" and tuned not in page.inner_text("main")

    # Usage: charts per day and model (or a plain empty state where metering is off).
    page.click("nav >> text=Usage")
    assert page.inner_text("h1") == "Usage"
    assert_accessible(page)
    page.screenshot(path=str(screenshots / "08-usage.png"), full_page=True)

    assert problems == []
    context.close()
