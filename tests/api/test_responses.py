"""The Responses API through the official SDK, in-process: on the echo engine where only the wire and
the translation onto chat matter, on the tiny model once (a real generation, cut short).

Every object is validated strictly against the SDK's own types (``Response``, ``ResponseItemList``,
each stream event), from the raw JSON the server sent."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.responses import FunctionTool, Response, ResponseItemList, ResponseStreamEvent
from pydantic import TypeAdapter
from sqlalchemy import select, text

from afinar.services.orgs import Principal, create_org
from afinar.store import usage as usage_repo
from afinar.store.tables import FineTunedModel, StoredResponse
from tests.api.test_chat_moderation import FlagWord, org_settings
from tests.support.adapters import make_adapter
from tests.support.echo_engine import EchoEngine, tokens
from tests.support.sdk import sdk
from tests.support.tiny_model import TINY

QUESTION = "Which wheels should I buy?"
WORDS = len(tokens(QUESTION))  # the echo engine's token count of the question (and of its answer)
CALLS = (
    '<tool_call>\n{"name": "get_order", "arguments": {"id": 42}}\n</tool_call>\n'
    '<tool_call>\n{"name": "refund", "arguments": {"id": 42, "full": true}}\n</tool_call>'
)
TOOLS: list[Any] = [
    {"type": "function", "name": "get_order", "parameters": {"type": "object"}},
    {
        "type": "function",
        "name": "refund",
        "description": "Refund an order.",
        "parameters": {"type": "object"},
    },
]
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> EchoEngine | None:
    """The echo engine; ``@TINY_MODEL``: None, the built-in engine on the tiny model."""
    return None if getattr(request, "param", None) == "tiny" else EchoEngine()


TINY_MODEL = pytest.mark.parametrize("engine", ["tiny"], indirect=True)


@pytest.fixture
def container(settings: Any, engine: EchoEngine | None) -> Iterator[Any]:
    from afinar.services.container import Container
    from afinar.services.orgs import bootstrap

    c = Container(settings, engine=engine)
    c.migrate()
    bootstrap(c.db, settings.default_org_name, settings.bootstrap_api_key)
    yield c
    c.close()


def create(client: openai.OpenAI, **body: Any) -> Response:
    """``responses.create``, checked strictly against the SDK's ``Response`` from the raw JSON."""
    raw = client.responses.with_raw_response.create(**body)
    checked = Response.model_validate(raw.http_response.json(), strict=True)
    parsed = raw.parse()
    assert parsed.id == checked.id
    return parsed


def events(http: Any, key: str, **body: Any) -> list[Any]:
    """POST a streamed create and return its events, each checked strictly against the SDK's types."""
    r = http.post("/v1/responses", json={**body, "stream": True}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
    return parse_events(r.text)


def first_texts(items: Iterable[Any]) -> list[str]:
    """The text of each message item's first content part."""
    return [item.content[0].text for item in items]


def parse_events(stream: str) -> list[Any]:
    """The events of an SSE body, each checked strictly against the SDK's types, numbered in order."""
    out = []
    for block in stream.split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        event = EVENTS.validate_python(json.loads(data.removeprefix("data: ")), strict=True)
        assert name == f"event: {event.type}"
        out.append(event)
    assert [e.sequence_number for e in out] == list(range(len(out)))
    return out


def test_create_text_then_stream_the_same_answer(client: openai.OpenAI, http: Any, container: Any) -> None:
    r = create(client, model=TINY, input=QUESTION, instructions="Answer briefly.", metadata={"run": "7"})
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    assert r.output_text == QUESTION  # the echo engine answers the last user message
    message = r.output[0]
    assert message.type == "message" and message.id.startswith("msg_") and message.role == "assistant"
    assert r.instructions == "Answer briefly." and r.metadata == {"run": "7"} and r.model == TINY
    assert r.usage is not None and r.usage.output_tokens == WORDS
    assert r.usage.input_tokens == 2 + 1 + WORDS + 1  # the system and user messages, +1 each
    assert r.usage.total_tokens == r.usage.input_tokens + WORDS
    assert r.usage.input_tokens_details.cached_tokens == 0
    sent = container.engine.requests[-1].messages
    assert sent == [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": QUESTION}]

    streamed = events(http, "sk-test-key", model=TINY, input=QUESTION)
    assert [e.type for e in streamed] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * WORDS,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert streamed[0].response.status == "in_progress" and streamed[0].response.output == []
    final = streamed[-1].response
    assert final.output_text == QUESTION and final.usage is not None and final.usage.output_tokens == WORDS
    assert "".join(e.delta for e in streamed if e.type == "response.output_text.delta") == QUESTION
    assert {e.item_id for e in streamed if hasattr(e, "item_id")} == {final.output[0].id}
    # The SDK's own stream helper accumulates the same response, and the stored one matches it.
    with client.responses.stream(model=TINY, input=QUESTION) as stream:
        done = stream.get_final_response()
    assert done.output_text == QUESTION
    assert client.responses.retrieve(final.id).output_text == QUESTION


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI, container: Any) -> None:
    first = create(client, model=TINY, input="first question", instructions="Be kind.")
    second = create(
        client,
        model=TINY,
        previous_response_id=first.id,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "second question"}]}],
    )
    assert second.previous_response_id == first.id and second.output_text == "second question"
    assert container.engine.requests[-1].messages == [  # instructions are not carried over
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first question"},
        {"role": "user", "content": "second question"},
    ]
    raw = client.responses.input_items.with_raw_response.list(second.id)
    items = ResponseItemList.model_validate(raw.http_response.json(), strict=True)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]  # type: ignore[union-attr]
    assert items.first_id == items.last_id == items.data[0].id and not items.has_more
    again = Response.model_validate(
        client.responses.with_raw_response.retrieve(second.id).http_response.json(), strict=True
    )
    assert again.output == second.output and again.usage == second.usage

    # Deleting the first keeps the second's conversation: a third response still sees all of it.
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    create(client, model=TINY, previous_response_id=second.id, input="third")
    assert [m["content"] for m in container.engine.requests[-1].messages] == [
        "first question",
        "first question",
        "second question",
        "second question",
        "third",
    ]
    with pytest.raises(openai.NotFoundError) as err:
        create(client, model=TINY, previous_response_id=first.id, input="again")
    assert err.value.param == "previous_response_id"


def test_input_items_pages_both_ways(client: openai.OpenAI) -> None:
    said = ["one", "two", "three"]
    r = create(client, model=TINY, input=[{"role": "user", "content": s} for s in said])
    pages = client.responses.input_items.list(r.id, limit=2, order="asc")
    assert first_texts(pages.data) == ["one", "two"] and pages.has_more
    assert first_texts(client.responses.input_items.list(r.id)) == said[::-1]  # newest first by default
    assert first_texts(client.responses.input_items.list(r.id, limit=1, order="asc")) == said  # paged


def test_store_false_is_not_retrievable(client: openai.OpenAI, container: Any) -> None:
    r = create(client, model=TINY, input=QUESTION, store=False)
    assert r.output_text == QUESTION
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError) as err:
        create(client, model=TINY, input="more", previous_response_id=r.id)
    assert err.value.param == "previous_response_id"
    with container.db.session() as s:
        assert s.scalar(select(StoredResponse.id)) is None


def test_tools_answer_with_function_calls_and_take_their_outputs(
    client: openai.OpenAI, http: Any, container: Any
) -> None:
    container._engine = engine = EchoEngine(reply=CALLS)
    r = create(client, model=TINY, input="Refund order 42.", tools=TOOLS)
    calls = [item for item in r.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_order", "refund"] and r.output_text == ""
    assert json.loads(calls[1].arguments) == {"id": 42, "full": True}
    assert all(c.id and c.id.startswith("fc_") and c.call_id.startswith("call_") for c in calls)
    assert engine.requests[-1].tools == [
        {"type": "function", "function": {"name": "get_order", "parameters": {"type": "object"}}},
        {
            "type": "function",
            "function": {
                "name": "refund",
                "description": "Refund an order.",
                "parameters": {"type": "object"},
            },
        },
    ]
    assert [t.name for t in r.tools if isinstance(t, FunctionTool)] == ["get_order", "refund"]
    assert r.tool_choice == "auto"

    # The caller runs the functions and sends their outputs back on the same conversation.
    engine.reply = "Refunded."
    outputs = [
        {"type": "function_call_output", "call_id": c.call_id, "output": '{"ok": true}'} for c in calls
    ]
    done = create(client, model=TINY, previous_response_id=r.id, input=outputs, tools=TOOLS)
    assert done.output_text == "Refunded."
    sent = engine.requests[-1].messages
    assert sent[1]["role"] == "assistant" and [c["id"] for c in sent[1]["tool_calls"]] == [
        c.call_id for c in calls
    ]
    assert sent[2:] == [{"role": "tool", "tool_call_id": c.call_id, "content": '{"ok": true}'} for c in calls]

    # Named tool choice and no parallel calls reach the chat path; streamed calls have their events.
    engine.reply = CALLS
    one = create(
        client, model=TINY, input="x", tools=TOOLS, tool_choice={"type": "function", "name": "refund"}
    )
    assert engine.requests[-1].response_prefix.startswith('<tool_call>\n{"name": "refund"')
    assert one.tool_choice.type == "function"  # type: ignore[union-attr]
    single = create(client, model=TINY, input="x", tools=TOOLS, parallel_tool_calls=False)
    assert [i.type for i in single.output] == ["function_call"] and single.parallel_tool_calls is False
    streamed = events(http, "sk-test-key", model=TINY, input="x", tools=TOOLS)
    kinds = [e.type for e in streamed]
    assert (
        kinds.count("response.function_call_arguments.done") == 2
        and "response.output_text.delta" not in kinds
    )
    args = [e for e in streamed if e.type == "response.function_call_arguments.delta"]
    assert json.loads(args[0].delta) == {"id": 42}
    assert [i.type for i in streamed[-1].response.output] == ["function_call", "function_call"]


def test_text_format_maps_onto_the_chat_response_format(client: openai.OpenAI, container: Any) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    r = create(client, model=TINY, input="Say a.", text={"format": fmt})
    assert container.engine.requests[-1].response_prefix == "{"  # a JSON object is forced
    assert container.engine.requests[-1].constraint is not None
    assert r.text is not None and r.text.format is not None and r.text.format.type == "json_schema"
    with pytest.raises(openai.BadRequestError) as err:
        create(client, model=TINY, input="Say a.", text={"format": {"type": "json_object"}})
    assert err.value.param == "input"  # json_object needs the word JSON in the input
    create(client, model=TINY, input="Answer in JSON.", text={"format": {"type": "json_object"}})
    assert container.engine.requests[-1].response_prefix == "{"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"reasoning": {"effort": "low"}}, "reasoning", "unsupported_parameter"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported_parameter"),
        ({"truncation": "auto"}, "truncation", "unsupported_parameter"),
        ({"background": True}, "background", "unsupported_parameter"),
        ({"include": ["file_search_call.results"]}, "include", "unsupported_parameter"),
        ({"frequency_penalty": 1}, "frequency_penalty", "unknown_parameter"),
        ({"tool_choice": "required"}, "tool_choice", None),
        ({"temperature": 3}, "temperature", None),
        (
            {
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}
                ]
            },
            "input[0].content[0]",
            "unsupported_content_type",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "unsupported_parameter"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", None),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_it(
    client: openai.OpenAI, body: dict[str, Any], param: str, code: str | None
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=TINY, input=QUESTION, extra_body=body)
    assert err.value.param == param and err.value.type == "invalid_request_error"
    if code is not None:
        assert err.value.code == code


def test_empty_values_of_unsupported_parameters_are_accepted(client: openai.OpenAI) -> None:
    r = create(
        client,
        model=TINY,
        input=QUESTION,
        truncation="disabled",
        background=False,
        include=[],
        reasoning=None,
    )
    assert r.truncation == "disabled" and r.background is False


def test_responses_belong_to_their_organisation_and_project(
    client: openai.OpenAI, bot: openai.OpenAI, container: Any, http: Any, tmp_path: Path, principal: Principal
) -> None:
    mine = create(client, model=TINY, input=QUESTION)
    _, key = create_org(container.db, "intruder")
    intruder = sdk(http, key)
    for who in (intruder, bot):  # another organisation; another project of the same one
        with pytest.raises(openai.NotFoundError):
            who.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            who.responses.input_items.list(mine.id)
        with pytest.raises(openai.NotFoundError):
            who.responses.delete(mine.id)
        with pytest.raises(openai.NotFoundError):
            who.responses.create(model=TINY, input="x", previous_response_id=mine.id)
    assert client.responses.retrieve(mine.id).id == mine.id

    # A tuned model of the default project answers there, and nowhere else.
    name = f"ft:{TINY}:default::abcdefgh"
    with container.db.session() as s:
        s.add(
            FineTunedModel(
                id=name,
                org_id=principal.org_id,
                project_id=principal.project_id,
                job_id="ftjob-x",
                base_model=TINY,
                owned_by="default",
                created_at=1,
                adapter_path=str(tmp_path),
            )
        )
    tuned = create(client, model=name, input=QUESTION)
    assert tuned.model == name and tuned.output_text == QUESTION
    assert container.engine.requests[-1].adapter_path == tmp_path
    with pytest.raises(openai.NotFoundError) as err:
        bot.responses.create(model=name, input=QUESTION)
    assert err.value.code == "model_not_found"


def test_stored_content_is_sealed(client: openai.OpenAI, container: Any) -> None:
    r = create(client, model=TINY, input="my secret question", instructions="secret instructions")
    with container.db.engine.connect() as conn:
        raw = conn.execute(text("SELECT settings, input_items, output FROM responses")).one()
    assert "secret" not in str(raw) and "$afinar_sealed" in str(raw)
    assert client.responses.retrieve(r.id).instructions == "secret instructions"


def test_metered_as_chat_and_stopped_by_the_spend_limit(
    client: openai.OpenAI, admin: openai.OpenAI, http: Any, container: Any, principal: Principal
) -> None:
    r = create(client, model=TINY, input=QUESTION)
    events(http, "sk-test-key", model=TINY, input="two words")
    with container.db.session() as s:
        ledger = usage_repo.between(s, principal.org_id, 0, 2**62, kind="inference")
    assert sorted((u.input_tokens, u.output_tokens, u.model) for u in ledger) == [
        (2 + 1, 2, TINY),  # "two words", streamed
        (WORDS + 1, WORDS, TINY),
    ]
    assert r.usage is not None and (r.usage.input_tokens, r.usage.output_tokens) == (WORDS + 1, WORDS)
    assert all(u.key.startswith("inference:chatcmpl-") for u in ledger)  # metered by the chat path

    admin.admin.organization.spend_limit.update(currency="USD", interval="month", threshold_amount=0)
    with pytest.raises(openai.RateLimitError) as err:
        client.responses.create(model=TINY, input=QUESTION)
    assert err.value.code == "insufficient_quota"
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model=TINY, input=QUESTION, stream=True)


def test_runtime_moderation_applies(client: openai.OpenAI, container: Any) -> None:
    from afinar.safety.moderation import ModerationEngine

    container.moderation = ModerationEngine(FlagWord("FORBIDDEN"))
    org_settings(client, runtime_moderation=True)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=TINY, input="FORBIDDEN words")
    assert err.value.code == "content_policy_violation"
    container._engine = EchoEngine(reply="a FORBIDDEN answer")
    r = create(client, model=TINY, input=QUESTION)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "content_filter" and r.output_text == ""


def test_idempotency_key_replays_the_first_answer(client: openai.OpenAI) -> None:
    key = {"Idempotency-Key": "resp-once"}
    first = client.responses.with_raw_response.create(model=TINY, input=QUESTION, extra_headers=key)
    again = client.responses.with_raw_response.create(model=TINY, input=QUESTION, extra_headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.parse().id == first.parse().id
    with pytest.raises(openai.UnprocessableEntityError):
        client.responses.create(model=TINY, input="other", extra_headers=key)


def test_idempotency_key_replays_a_finished_stream(http: Any, container: Any) -> None:
    headers = {"Authorization": "Bearer sk-test-key", "Idempotency-Key": "stream-once"}
    body = {"model": TINY, "input": QUESTION, "stream": True}
    first = http.post("/v1/responses", json=body, headers=headers)
    again = http.post("/v1/responses", json=body, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(container.engine.requests) == 1  # generated once
    live, replayed = parse_events(first.text), parse_events(again.text)
    assert replayed[-1].type == live[-1].type == "response.completed"
    assert replayed[-1].response == live[-1].response and live[-1].response.output_text == QUESTION
    kinds = [e.type for e in live if "delta" not in e.type]
    assert [e.type for e in replayed if "delta" not in e.type] == kinds
    assert "".join(e.delta for e in replayed if e.type == "response.output_text.delta") == QUESTION


@TINY_MODEL
def test_base_and_tuned_tiny_models_generate_and_stop_at_max_output_tokens(
    client: openai.OpenAI, container: Any, tiny_model_dir: Path, tmp_path: Path, principal: Principal
) -> None:
    name = f"ft:{TINY}:default::tunedabc"
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", seed=3)
    with container.db.session() as s:
        s.add(
            FineTunedModel(
                id=name,
                org_id=principal.org_id,
                project_id=principal.project_id,
                job_id="ftjob-x",
                base_model=TINY,
                owned_by="default",
                created_at=1,
                adapter_path=str(adapter),
            )
        )
    for model in (TINY, name):
        r = create(client, model=model, input=QUESTION, max_output_tokens=3, temperature=0)
        assert r.model == model and r.status == "incomplete" and r.incomplete_details is not None
        assert r.incomplete_details.reason == "max_output_tokens"
        assert r.usage is not None and r.usage.output_tokens == 3
        assert r.output[0].type == "message" and r.output[0].status == "incomplete"


def test_exported_in_the_clear_and_erased_with_the_organisation(
    client: openai.OpenAI, container: Any, tmp_path: Path, principal: Principal
) -> None:
    from afinar.api.schemas.models import model_card_object

    r = create(client, model=TINY, input="exported question")
    out = tmp_path / "org.zip"
    container.exporter.export(principal.org_id, out, card=model_card_object)
    with zipfile.ZipFile(out) as zf:
        [row] = [json.loads(line) for line in zf.read("responses.jsonl").splitlines()]
    assert row["id"] == r.id and row["input_items"][0]["content"][0]["text"] == "exported question"
    assert row["output"][0]["content"][0]["text"] == "exported question"

    report = container.erasure.delete_org(principal.org_id)
    assert report.rows_deleted["responses"] == 1
    with container.db.session() as s:
        assert s.scalar(select(StoredResponse.id)) is None
