"""Schemathesis over the app's own OpenAPI schema: no server error, no response that breaks the schema.

The schema is loaded from the in-process ASGI app, so a new route is covered automatically. Every
operation gets a few derandomized examples, sent with the bootstrap admin key, in three passes:

1. valid inputs (``positive``) with generated path parameters (mostly unknown ids: 404);
2. invalid inputs (``negative``) where the schema leaves something to break;
3. valid inputs with the path parameters set to real objects (a file, a succeeded job, its model
   and checkpoint, an eval with a completed run, a project, a service account and its key, a user),
   DELETEs last; chat goes to the tiny model.

Routes that read their JSON body by hand declare no request body in the schema; for those the
test sends generated JSON objects made of the field names the API knows (``BODY_FIELDS``).

Excluded: ``/health`` (no input) and the dashboard (HTML, not in the schema). Nothing else.
Schemathesis' pytest plugin does not run under pytest 9, so the operations are driven by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.data import chat_file
from tests.support.evals import EXACT_MATCH, make_eval
from tests.support.tiny_model import TINY
from tests.support.worker import run_worker

AUTH = {"authorization": "Bearer sk-test-key"}
EXCLUDED = {"/health"}
EXAMPLES = 3
CHECKS = [not_a_server_error, response_schema_conformance]

# Field names of the request bodies the API reads by hand (files, jobs, admin, evals, settings…).
BODY_FIELDS = [
    "model", "training_file", "validation_file", "hyperparameters", "method", "suffix", "seed",
    "metadata", "integrations", "name", "role", "scopes", "expires_in_seconds", "user_id", "email",
    "messages", "max_tokens", "input", "data_source_config", "testing_criteria", "data_source",
    "threshold", "currency", "interval", "runtime_moderation", "file_retention_days", "eval_gate",
]  # fmt: skip
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
BODIES = st.dictionaries(st.sampled_from(BODY_FIELDS), JSON, max_size=4)


@pytest.fixture
def known(client: openai.OpenAI, container: Any, tmp_path: Path) -> dict[str, str]:
    """Real objects of the caller's organisation, by path parameter name."""
    from afinar.services.checkpoint_permissions import NewPermissions
    from afinar.services.projects import NewMember
    from afinar.services.service_accounts import NewServiceAccount
    from afinar.store.orgs import default_project

    fid = client.files.create(file=chat_file(tmp_path / "t.jsonl", 10).open("rb"), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model=TINY, training_file=fid, hyperparameters={"n_epochs": 1})
    ev = make_eval(client, [{**EXACT_MATCH, "reference": "a"}], name="e", item_schema={"type": "object"})
    source = {"type": "file_content", "content": [{"item": {"q": "x"}, "sample": {"output_text": "a"}}]}
    run = client.evals.runs.create(ev.id, data_source={"type": "jsonl", "source": source})  # type: ignore[arg-type,typeddict-item]
    run_worker(container)
    job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    ckpt = client.fine_tuning.jobs.checkpoints.list(job.id).data[0].fine_tuned_model_checkpoint
    item = client.evals.runs.output_items.list(run.id, eval_id=ev.id).data[0].id
    with container.db.session() as s:
        project = default_project(s, job.organization_id)
        assert project is not None
    org = job.organization_id
    accounts = container.service_accounts
    account, key, _ = accounts.create_service_account(org, project.id, NewServiceAccount("bot"))
    user = container.users.add_user(org, "ana@example.com", role="reader")
    container.projects.add_member(org, project.id, NewMember("member", user_id=user.id))
    extra_admin, _ = container.api_keys.create_key(org, kind="admin", name="spare", role="owner")
    shared = container.checkpoint_permissions.create(org, ckpt, NewPermissions((project.id,)))[0]
    assert key is not None
    return {
        "file_id": fid,
        "job_id": job.id,
        "fine_tuning_job_id": job.id,
        "model": str(job.fine_tuned_model),
        "fine_tuned_model_checkpoint": ckpt,
        "project_id": project.id,
        "key_id": extra_admin.id,
        "api_key_id": key.id,
        "service_account_id": account.id,
        "user_id": user.id,
        "eval_id": ev.id,
        "run_id": run.id,
        "output_item_id": item,
        "permission_id": shared.id,
        # a receiver nobody listens on (the discard port): a test call is refused, never sent away
        "webhook_endpoint_id": client.webhooks.create(
            name="hook", url="http://127.0.0.1:9/", event_types=["fine_tuning.job.failed"]
        ).id,
        "response_id": client.responses.create(model=TINY, input="hi", max_output_tokens=2).id,
    }


@pytest.fixture
def api_schema(app: Any, known: dict[str, str]) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _send(case: Any, body: dict[str, Any] | None) -> None:
    if body is not None:
        case.body, case.media_type = body, "application/json"
    if case.operation.path.endswith("/report"):
        case.query = {**(case.query or {}), "model": TINY}  # the default base model is slow to load
    if case.operation.path == "/v1/chat/completions" and isinstance(case.body, dict):
        case.body = {**case.body, "model": TINY, "max_tokens": 2, "n": 1}
        case.body.pop("max_completion_tokens", None)
    case.call_and_validate(headers=AUTH, checks=CHECKS)


def _run(operation: Any, mode: GenerationMode, path_parameters: dict[str, str] | None) -> str | None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)
    hand_body = operation.method.upper() in ("POST", "PUT", "PATCH") and not operation.body
    bodies = BODIES if hand_body else st.none()
    test = settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )(given(case=strategy, body=bodies)(_send))
    try:
        test()
    except Unsatisfiable:
        return None  # nothing to make invalid (only string path parameters, or no input at all)
    except (Exception, FailureGroup) as exc:  # every failure is collected and reported together
        inner = "".join(f"\n  - {e!r}" for e in getattr(exc, "exceptions", ()))
        return f"{operation.label} [{mode.value}{', known ids' if path_parameters else ''}]: {exc}{inner}"
    return None


def test_api_conforms_to_its_schema(api_schema: Any, known: dict[str, str]) -> None:
    operations = [r.ok() for r in api_schema.get_all_operations()]
    operations = [op for op in operations if op.path not in EXCLUDED]
    assert len(operations) > 50
    failures: list[str] = []
    for op in operations:
        failures.append(_run(op, GenerationMode.POSITIVE, None) or "")
        if op.query or op.body:  # a string path parameter cannot be made invalid
            failures.append(_run(op, GenerationMode.NEGATIVE, None) or "")
    # Real objects, DELETEs last so every other operation still finds them.
    with_ids = [op for op in operations if "{" in op.path]
    for op in sorted(with_ids, key=lambda op: op.method.upper() == "DELETE"):
        names = [p.name for p in op.path_parameters]
        assert all(n in known for n in names), f"{op.label}: teach `known` the parameter(s) {names}"
        failures.append(_run(op, GenerationMode.POSITIVE, {n: known[n] for n in names}) or "")
    failures = [f for f in failures if f]
    assert not failures, "\n\n".join(failures)


def test_a_real_chat_completion_conforms(app: Any) -> None:
    """Generated chat bodies are refused (400); one real completion from the tiny model is checked too."""
    api_schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    case = api_schema["/v1/chat/completions"]["POST"].Case(
        body={"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        media_type="application/json",
    )
    response = case.call_and_validate(headers=AUTH, checks=CHECKS)
    assert response.status_code == 200 and response.json()["object"] == "chat.completion"


def test_report_of_an_unknown_file_is_404_before_any_model_loads(http: Any) -> None:
    r = http.get("/v1/afinar/files/file-nope/report", params={"model": "no-such-model"}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["param"] == "id"


def test_the_schema_declares_the_error_envelope_not_422(app: Any) -> None:
    for operations in app.openapi()["paths"].values():
        for operation in operations.values():
            assert "422" not in operation["responses"]
            schema = operation["responses"]["default"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
