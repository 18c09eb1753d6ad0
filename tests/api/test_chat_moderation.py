"""Runtime moderation per organisation, through the official SDK: off by default; on, flagged input
is a 400 ``content_policy_violation`` that bills nothing, and flagged output ends with
``finish_reason: "content_filter"`` (streaming and not).

The input tests use the real built-in moderation engine. To flag the tiny random model's output
deterministically, the output tests put a moderation double into the container: it flags every
text except the request's own messages.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from afinar.inference.engine import collect
from afinar.inference.types import Delta, Event, Finished, GenerationRequest, GenerationResult, Started
from afinar.safety.moderation import ModerationEngine, ModerationResult
from afinar.store.tables import AuditLog, UsageRecord
from tests.support.cli import admin, embedded_env
from tests.support.echo_engine import EchoEngine

MODEL = "tiny-llama"
HARMFUL = "I'm going to find you tonight and stab you. Tell me the best knife for it."
BENIGN = "Which wheels should I buy for a street skateboard?"
SETTINGS = "/afinar/organization/settings"


# --- helpers ------------------------------------------------------------------------------------


def org_settings(client: openai.OpenAI, **changes: Any) -> dict[str, Any]:
    """GET (no changes) or POST the organisation's settings object through the SDK's raw calls."""
    if changes:
        return client.post(SETTINGS, body=changes, cast_to=dict)
    return client.get(SETTINGS, cast_to=dict)


def billed(container: Any) -> int:
    with container.db.session() as s:
        return int(
            s.scalar(select(func.count()).select_from(UsageRecord).where(UsageRecord.kind == "inference"))
        )


def usage_row(container: Any) -> UsageRecord:
    with container.db.session() as s:
        row = s.scalars(select(UsageRecord).where(UsageRecord.kind == "inference")).one()
        s.expunge(row)
    return row


class FlagAllButInput:
    """A moderation backend double: flags (violence) every text but the request's own messages."""

    name = "flag-output-double"

    def __init__(self, inputs: Sequence[str]) -> None:
        self.inputs = set(inputs)
        self.seen: list[str] = []

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        self.seen += texts
        return [{} if t in self.inputs else {"violence": 0.9} for t in texts]


class FlagWord:
    """A moderation backend double: flags texts that contain ``word``."""

    name = "flag-word-double"

    def __init__(self, word: str) -> None:
        self.word = word
        self.seen: list[str] = []

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        self.seen += texts
        return [{"violence": 0.9} if self.word in t else {} for t in texts]


class ScriptedEngine(EchoEngine):
    """An inference engine double that answers with a fixed text, 4 characters per token."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[Event, None]:
        yield Started(prompt_tokens=7)
        pieces = [self.text[k : k + 4] for k in range(0, len(self.text), 4)]
        for piece in pieces:
            yield Delta(index=0, text=piece)
        yield Finished(index=0, finish_reason="stop", completion_tokens=len(pieces))

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return collect([e async for e in self.stream(request)], request.params.n)


@pytest.fixture
def visible(tiny_model_dir: Path) -> dict[str, Any]:
    """Sampling that makes the random tiny model write "aaaa…" (max_tokens long, never blank)."""
    from transformers import AutoTokenizer

    letter = AutoTokenizer.from_pretrained(tiny_model_dir).convert_tokens_to_ids("a")
    return {"temperature": 0, "logit_bias": {str(letter): 100}}


@pytest.fixture
def builtin(container: Any, builtin_engine: ModerationEngine) -> ModerationEngine:
    """The real built-in engine (loaded once per session) as the container's moderation engine."""
    container.moderation = builtin_engine
    return builtin_engine


# --- the settings object --------------------------------------------------------------------------


def test_off_by_default_and_a_harmful_prompt_is_answered(
    client: openai.OpenAI, container: Any, builtin: ModerationEngine
) -> None:
    settings = org_settings(client)
    assert settings["object"] == "organization.settings" and settings["runtime_moderation"] is False
    assert builtin.moderate([HARMFUL])[0].flagged  # the engine would flag it, were it on
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": HARMFUL}], max_tokens=4
    )
    assert r.choices[0].finish_reason in ("stop", "length") and r.choices[0].message.content is not None
    assert billed(container) == 1


def test_settings_need_an_admin_key_validate_and_are_audited(
    client: openai.OpenAI, container: Any, http: Any
) -> None:
    from afinar.store.orgs import first_org

    with container.db.session() as s:
        org = first_org(s)
        assert org is not None
        org_id = org.id
    assert org_settings(client, runtime_moderation=True) == {
        "object": "organization.settings",
        "id": org_id,
        "runtime_moderation": True,
        "file_retention_days": None,
    }
    assert org_settings(client)["runtime_moderation"] is True
    with pytest.raises(openai.BadRequestError) as bad:
        org_settings(client, runtime_moderation="yes")
    assert bad.value.param == "runtime_moderation"
    with pytest.raises(openai.BadRequestError) as unknown:
        org_settings(client, runtime_moderaton=False)
    assert (
        unknown.value.param == "runtime_moderaton" and "Unknown organization setting" in unknown.value.message
    )
    with container.db.session() as s:
        entries = s.scalars(select(AuditLog).where(AuditLog.type == "organization.settings.updated")).all()
        assert [e.details for e in entries] == [{"id": org_id, "changes": {"runtime_moderation": True}}]
        assert entries[0].actor_key_id is not None  # the admin key that made the change

    project_id = container.projects.default_project_id(org_id)
    _, secret = container.api_keys.create_key(org_id, kind="project", name="p", project_id=project_id)
    project = openai.OpenAI(base_url="http://testserver/v1", api_key=secret, http_client=http, max_retries=0)
    for call in (lambda: org_settings(project), lambda: org_settings(project, runtime_moderation=False)):
        with pytest.raises(openai.PermissionDeniedError) as denied:
            call()
        assert denied.value.code == "insufficient_permissions"
    assert org_settings(client)["runtime_moderation"] is True


def test_cli_switches_it_per_organisation(tmp_path: Path, tiny_catalog: Path) -> None:
    from afinar.cli.main import app

    env = embedded_env(tmp_path / "data", tiny_catalog)
    run = partial(admin, env, "orgs")

    acme = json.loads(run("create", "Acme", "--json"))
    json.loads(run("create", "Beta", "--json"))
    assert json.loads(run("settings", "acme", "--json"))["runtime_moderation"] is False
    assert "runtime moderation on" in run("moderation", "acme", "on")
    assert json.loads(run("settings", acme["id"], "--json"))["runtime_moderation"] is True
    assert json.loads(run("settings", "beta", "--json"))["runtime_moderation"] is False
    assert json.loads(run("moderation", "acme", "off", "--json"))["runtime_moderation"] is False
    bad = CliRunner().invoke(app, ["admin", "orgs", "moderation", "acme", "maybe"], env=env)
    assert bad.exit_code != 0 and "on" in bad.output


# --- input ----------------------------------------------------------------------------------------


def test_flagged_input_is_a_400_that_bills_and_generates_nothing(
    client: openai.OpenAI, container: Any, builtin: ModerationEngine, visible: dict[str, Any]
) -> None:
    org_settings(client, runtime_moderation=True)
    messages: list[Any] = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": HARMFUL},
    ]
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, stream=stream)
        assert err.value.code == "content_policy_violation"
        assert err.value.param == "messages"
        assert err.value.type == "invalid_request_error"
        expected = builtin.moderate([HARMFUL])[0].flagged_categories
        assert expected and all(c in err.value.message for c in expected)
    assert billed(container) == 0
    # A benign request still goes through, moderated both ways by the real engine.
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": BENIGN}], max_tokens=4, **visible
    )
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == "aaaa"
    assert billed(container) == 1


# --- output ---------------------------------------------------------------------------------------


def test_flagged_output_non_streaming_is_withheld_and_billed(
    client: openai.OpenAI, container: Any, visible: dict[str, Any]
) -> None:
    double = FlagAllButInput([BENIGN])
    container.moderation = ModerationEngine(double)
    org_settings(client, runtime_moderation=True)
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": BENIGN}], max_tokens=5, **visible
    )
    [choice] = r.choices
    assert choice.finish_reason == "content_filter"
    assert choice.message.content is None and not choice.message.tool_calls
    assert r.usage is not None and r.usage.completion_tokens == 5  # billed for what was generated
    assert len(double.seen) == 2 and double.seen[0] == BENIGN  # the input, then the generated text
    row = usage_row(container)
    assert (row.input_tokens, row.output_tokens) == (r.usage.prompt_tokens, 5)

    org_settings(client, runtime_moderation=False)
    again = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": BENIGN}], max_tokens=5, **visible
    )
    assert again.choices[0].finish_reason == "length" and again.choices[0].message.content == "aaaaa"
    assert len(double.seen) == 2  # off: the engine is not asked


def test_flagged_output_streaming_ends_with_content_filter(
    client: openai.OpenAI, container: Any, visible: dict[str, Any]
) -> None:
    container.moderation = ModerationEngine(FlagAllButInput([BENIGN]))
    org_settings(client, runtime_moderation=True)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": BENIGN}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
            **visible,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ""  # the first window was flagged: nothing generated reached the client
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["content_filter"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert billed(container) == 1


def test_streaming_releases_clean_windows_and_withholds_the_flagged_one(
    client: openai.OpenAI, container: Any, settings: Any
) -> None:
    clean = "Sure, here is a calm answer about skateboard wheels and bearings. " * 4  # > one window
    container._engine = ScriptedEngine(clean + "Then FORBIDDEN words follow here.")
    double = FlagWord("FORBIDDEN")
    container.moderation = ModerationEngine(double)
    org_settings(client, runtime_moderation=True)
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": BENIGN}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and clean.startswith(text) and "FORBIDDEN" not in text
    assert len(text) >= settings.moderation_stream_window_chars  # clean windows went out first
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)

    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": BENIGN}])
    assert r.choices[0].finish_reason == "content_filter" and r.choices[0].message.content is None

    container._engine = ScriptedEngine(clean)
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": BENIGN}])
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == clean
    streamed = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": BENIGN}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == clean
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_moderation_results_are_what_the_chat_path_reads() -> None:
    result = ModerationEngine(FlagWord("x")).moderate(["x"])[0]
    assert isinstance(result, ModerationResult) and result.flagged_categories == ["violence"]
