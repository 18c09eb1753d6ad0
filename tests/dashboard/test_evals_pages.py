"""The dashboard's evals pages and the model card's checks, in-process (no browser).

Evals and runs are made through the official SDK and run by the worker (``jsonl`` runs grade the
samples they are given, so they finish in milliseconds); a published model's card is written with
the worker's own ``build_card``/``write_card``.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.dashboard import BASE, CANDIDATE, EXACT, ITEMS, POLITE, sign_in
from tests.support.data import chat_file
from tests.support.evals import jsonl_source, make_eval
from tests.support.sdk import sdk
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker


def seed_comparison(
    client: openai.OpenAI, container: Any, name: str = "shop answers"
) -> tuple[Any, Any, Any]:
    """An eval with a base run (25% pass) and a candidate run (50% pass), both completed."""
    ev = make_eval(client, [EXACT, POLITE], name=name)
    given: Any = jsonl_source(list(zip(ITEMS, BASE, strict=True)))
    base = client.evals.runs.create(ev.id, data_source=given, name="base")
    given = jsonl_source(list(zip(ITEMS, CANDIDATE, strict=True)))
    cand = client.evals.runs.create(ev.id, data_source=given, name="candidate")
    run_worker(container)
    for run in (base, cand):
        assert client.evals.runs.retrieve(run.id, eval_id=ev.id).status == "completed"
    return ev, base, cand


def rates(html: str, criterion: str) -> tuple[str, str, str]:
    row = re.search(rf'<tr data-criterion="{criterion}">(.*?)</tr>', html, re.S)
    assert row is not None, criterion
    cells = [re.search(rf"data-{k}>([^<]*)<", row.group(1)) for k in ("base", "candidate", "delta")]
    assert all(cells), row.group(1)
    return tuple(c.group(1) for c in cells)  # type: ignore[return-value,union-attr]


def items_shown(html: str) -> dict[int, str]:
    return {int(i): ch for i, ch in re.findall(r'data-item="(\d+)" data-change="(\w+)"', html)}


def test_evals_list_eval_page_and_comparison(client: openai.OpenAI, container: Any, http: Any) -> None:
    ev, base, cand = seed_comparison(client, container)
    assert sign_in(http).status_code == 303

    listing = http.get("/evals").text
    assert 'href="/evals"' in listing and 'aria-current="page"' in listing  # the nav link
    row = re.search(rf'<tr data-eval="{ev.id}">(.*?)</tr>', listing, re.S)
    assert row is not None and "shop answers" in row.group(1) and "exact" in row.group(1)
    assert re.search(r'<td class="num">2</td>', row.group(1))

    page = http.get(f"/evals/{ev.id}").text
    runs = dict(re.findall(r'<tr data-run="([\w-]+)" data-status="(\w+)">', page))
    assert runs == {base.id: "completed", cand.id: "completed"}
    assert 'hx-trigger="every 3s"' not in page  # nothing running: no polling
    cand_row = re.search(rf'<tr data-run="{cand.id}".*?</tr>', page, re.S)
    assert cand_row is not None
    assert "50.0%" in cand_row.group(0) and re.search(r'data-criterion="exact">75.0%', cand_row.group(0))
    # The picker starts on the older run as base and the newer as candidate.
    assert re.search(rf'id="base_run_id".*?<option value="{base.id}" selected>', page, re.S)
    assert re.search(rf'id="candidate_run_id".*?<option value="{cand.id}" selected>', page, re.S)

    url = f"/evals/{ev.id}/compare?base_run_id={base.id}&candidate_run_id={cand.id}"
    compared = http.get(url).text
    assert rates(compared, "") == ("25.0%", "50.0%", "+25.0 pts")
    assert rates(compared, "exact") == ("50.0%", "75.0%", "+25.0 pts")
    assert rates(compared, "polite") == ("25.0%", "50.0%", "+25.0 pts")
    assert "2 improved · 1 regressed · 1 unchanged" in compared
    assert items_shown(compared) == {0: "improved", 1: "regressed", 3: "improved"}  # changed only
    first = re.search(r'<article class="item-diff" data-item="0".*?</article>', compared, re.S)
    assert first is not None
    assert "Deck width for street?" in first.group(0)
    assert "Seven inches" in first.group(0) and "Eight inches, thanks" in first.group(0)
    assert items_shown(http.get(url + "&show=improved").text) == {0: "improved", 3: "improved"}
    assert items_shown(http.get(url + "&show=all").text) == {
        0: "improved",
        1: "regressed",
        2: "same",
        3: "improved",
    }

    # The page shows what the API returns: one comparison, not two.
    api = http.get(
        f"/v1/afinar/evals/{ev.id}/compare?base_run_id={base.id}&candidate_run_id={cand.id}",
        headers={"authorization": f"Bearer {client.api_key}"},
    ).json()
    assert (api["base_pass_rate"], api["candidate_pass_rate"]) == (0.25, 0.5)
    assert {i["datasource_item_id"]: i["change"] for i in api["items"]} == items_shown(
        http.get(url + "&show=all").text
    )


def test_comparison_refusals(client: openai.OpenAI, container: Any, http: Any) -> None:
    ev, base, cand = seed_comparison(client, container)
    _, other_run, _ = seed_comparison(client, container, name="another eval")
    assert sign_in(http).status_code == 303
    picker = http.get(f"/evals/{ev.id}/compare")  # no runs chosen yet: the picker, preselected
    assert picker.status_code == 200 and "data-comparison" not in picker.text
    assert re.search(rf'id="candidate_run_id".*?<option value="{cand.id}" selected>', picker.text, re.S)
    r = http.get(f"/evals/{ev.id}/compare?base_run_id={base.id}&candidate_run_id={other_run.id}")
    assert r.status_code == 404 and other_run.id in r.text  # a run of another eval
    r = http.get(f"/evals/{ev.id}/compare?base_run_id={base.id}&candidate_run_id={cand.id}&show=bogus")
    assert r.status_code == 400
    assert http.get("/evals/eval_nope").status_code == 404


def test_a_project_key_sees_only_its_projects_evals(
    client: openai.OpenAI, container: Any, http: Any, settings: Any
) -> None:
    ev, _, _ = seed_comparison(client, container)
    admin = sdk(http, settings.bootstrap_api_key)
    project = admin.admin.organization.projects.create(name="viewers").id
    made = admin.admin.organization.projects.service_accounts.create(project, name="wallboard")
    assert made.api_key is not None
    admin.admin.organization.projects.api_keys.update(
        made.api_key.id, project_id=project, scopes=["api.all.read"]
    )
    assert sign_in(http, key=made.api_key.value).status_code == 303
    listing = http.get("/evals")
    assert listing.status_code == 200 and ev.id not in listing.text and "No evals yet" in listing.text
    assert http.get(f"/evals/{ev.id}").status_code == 404
    bot = openai.OpenAI(
        base_url="http://testserver/v1", api_key=made.api_key.value, http_client=http, max_retries=0
    )
    with pytest.raises(openai.NotFoundError):
        bot.evals.retrieve(ev.id)
    http.cookies.clear()
    assert sign_in(http).status_code == 303  # the organisation's default project sees it
    assert ev.id in http.get("/evals").text


def publish_with_card(container: Any, job_id: str, checks: dict[str, Any]) -> str:
    """Publish a job's model the way the worker does: card beside the adapter, sealed, then the row."""
    from afinar.domain.jobs import JobStatus
    from afinar.services.model_card import build_card, write_card
    from afinar.store import jobs as jobs_repo
    from afinar.store.tables import FineTunedModel

    adapter = container.settings.jobs_dir / job_id / "final"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    with container.db.session() as s:
        job = jobs_repo.get_any(s, job_id)
        assert job is not None
        job.resolved_hyperparameters = {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 1.0}
        card = build_card(
            job,
            files=container.files,
            catalog=container.catalog,
            created_at=int(container.clock()),
            trained_tokens=120,
            metrics=[],
            checks=checks,
        )
        write_card(adapter, card)
        container.artefacts.seal(job.org_id, adapter)  # published adapters are stored encrypted
        shutil.rmtree(adapter)
        s.add(
            FineTunedModel(
                id=job.model_name,
                org_id=job.org_id,
                project_id=job.project_id,
                job_id=job.id,
                base_model=job.model,
                owned_by=job.org_id,
                created_at=int(time.time()),
                adapter_path=str(adapter),
            )
        )
        job.status = JobStatus.SUCCEEDED
        job.fine_tuned_model = job.model_name
        job.trained_tokens = 120
        job.finished_at = int(time.time())
        return str(job.model_name)


def test_model_page_shows_the_safety_and_eval_gate_checks(
    client: openai.OpenAI, container: Any, http: Any, tmp_path: Path
) -> None:
    from afinar.domain import eval_results as report
    from afinar.safety.evaluation import SafetyRule, SafetyVerdict

    ev, base, cand = seed_comparison(client, container)
    train = client.files.create(file=chat_file(tmp_path / "t.jsonl", 12).open("rb"), purpose="fine-tune")
    gate = {
        "eval_id": ev.id,
        "data_source": {
            "type": "completions",
            "source": {"type": "file_content", "content": [{"item": i} for i in ITEMS]},
            "input_messages": {
                "type": "template",
                "template": [{"role": "user", "content": "{{item.question}}"}],
            },
        },
        "min_pass_rate": 0.5,
        "beat_base_by": 0.2,
    }
    job = client.fine_tuning.jobs.create(
        model=TINY, training_file=train.id, suffix="gated", extra_body={"eval_gate": gate}
    )
    decided = report.judge_gate(0.5, 0.25, min_pass_rate=0.5, beat_base_by=0.2)
    verdict = {
        "passed": decided.passed,
        "eval_id": ev.id,
        "rule": {"min_pass_rate": 0.5, "beat_base_by": 0.2, "testing_criteria": None},
        "base": {"run_id": base.id, "model": TINY, "status": "completed", "pass_rate": 0.25},
        "tuned": {"run_id": cand.id, "model": "ft:tuned", "status": "completed", "pass_rate": 0.5},
        "pass_rate_delta": 0.25,
        "reasons": decided.reasons,
        "decided_at": int(time.time()),
    }
    safety = SafetyVerdict(  # the worker writes ``verdict.to_dict()`` under ``checks.safety``
        passed=True,
        reasons=[],
        warnings=["over-refusal rose by 12.0 points"],
        base_model=TINY,
        tuned_model=str(job.fine_tuned_model),
        classifier="lexical",
        n_forbidden=40,
        n_allowed=20,
        base_compliance=0.05,
        tuned_compliance=0.075,
        base_over_refusal=0.1,
        tuned_over_refusal=0.22,
        mcnemar_p=0.5,
        regressions=[],
        categories={},
        failed_categories=[],
        rule=SafetyRule(),
    ).to_dict()
    name = publish_with_card(container, job.id, {"safety": safety, "eval_gate": verdict})
    assert sign_in(http).status_code == 303
    page = http.get(f"/models/{name}").text

    safety_html = re.search(r'data-check="safety">(.*?)</section>', page, re.S)
    assert safety_html is not None
    assert "Passed" in safety_html.group(1) and "5.0% → 7.5%" in safety_html.group(1)
    assert "10.0% → 22.0%" in safety_html.group(1) and "over-refusal rose" in safety_html.group(1)

    gate_html = re.search(r'data-check="eval_gate">(.*?)</section>', page, re.S)
    assert gate_html is not None
    g = gate_html.group(1)
    assert f'<a href="/evals/{ev.id}">shop answers</a>' in g
    assert "pass rate ≥ 50.0%; beat the base by ≥ +20.0 pts" in g
    assert re.search(r"data-base-rate>25.0%", g) and re.search(r"data-tuned-rate>50.0%", g)
    assert re.search(r"data-margin>\+25.0 pts", g) and re.search(r"data-verdict>Passed", g)
    assert f"base_run_id={base.id}&amp;candidate_run_id={cand.id}" in g  # compare the gate's runs
    assert "<code>model_card.json</code>" in page and "Download adapter (.zip)" in page


def test_a_queued_run_shows_progress_and_the_page_polls_until_it_ends(
    client: openai.OpenAI, container: Any, http: Any
) -> None:
    ev = make_eval(client, [EXACT])
    given: Any = jsonl_source(list(zip(ITEMS, BASE, strict=True)))
    run = client.evals.runs.create(ev.id, data_source=given)
    assert sign_in(http).status_code == 303
    page = http.get(f"/evals/{ev.id}").text
    assert f'hx-get="/evals/{ev.id}" hx-trigger="every 3s"' in page
    row = re.search(rf'<tr data-run="{run.id}" data-status="queued">.*?</tr>', page, re.S)
    assert row is not None and 'value="0"' in row.group(0) and "0/4" in row.group(0)
    assert "A comparison needs two runs" in page
    run_worker(container)
    fragment = http.get(f"/evals/{ev.id}", headers={"hx-request": "true"}).text
    assert fragment.startswith('<section id="eval-runs"') and "hx-trigger" not in fragment
    assert f'<tr data-run="{run.id}" data-status="completed">' in fragment and "4/4" in fragment
