"""``POST /v1/moderations`` through the official ``openai`` SDK, checked against the SDK's types."""

from __future__ import annotations

import json
import re
from typing import Any

import openai
import pytest
from openai.types import ModerationCreateResponse

from afinar.safety.categories import CATEGORIES

THREAT = "I'm going to find you tonight and stab you."
BENIGN = "How do I kill a zombie process in Linux?"


def _validated(client: openai.OpenAI, **kwargs: Any) -> tuple[ModerationCreateResponse, dict[str, Any]]:
    raw = client.moderations.with_raw_response.create(**kwargs)
    body = json.loads(raw.text)
    # Strict validation against the SDK's own model (the SDK does not validate by default).
    return ModerationCreateResponse.model_validate(body), body


def test_string_input(client: openai.OpenAI) -> None:
    response, body = _validated(client, input=THREAT)
    assert re.fullmatch(r"modr-[0-9a-f]{32}", response.id)
    assert response.model == "omni-moderation-latest"
    [result] = response.results
    assert result.flagged
    assert result.categories.harassment_threatening is True
    assert result.categories.violence is True
    assert result.category_scores.harassment_threatening > 0.5
    assert set(body["results"][0]["categories"]) == set(CATEGORIES)
    assert set(body["results"][0]["category_scores"]) == set(CATEGORIES)
    assert body["results"][0]["category_applied_input_types"] == {c: ["text"] for c in CATEGORIES}
    assert all(isinstance(v, float) for v in body["results"][0]["category_scores"].values())


def test_list_input_keeps_order(client: openai.OpenAI) -> None:
    response = client.moderations.create(
        input=[BENIGN, THREAT, "Thanks, have a nice day!"], model="omni-moderation-2024-09-26"
    )
    assert isinstance(response, ModerationCreateResponse)
    assert response.model == "omni-moderation-2024-09-26"
    assert [r.flagged for r in response.results] == [False, True, False]
    assert response.results[0].categories.illicit is False


def test_text_parts(client: openai.OpenAI) -> None:
    response, _ = _validated(
        client, input=[{"type": "text", "text": BENIGN}, {"type": "text", "text": THREAT}]
    )
    assert [r.flagged for r in response.results] == [False, True]
    assert response.results[1].category_applied_input_types.violence == ["text"]


def test_text_moderation_models_leave_out_illicit(client: openai.OpenAI) -> None:
    response, body = _validated(client, input=THREAT, model="text-moderation-latest")
    assert response.model == "text-moderation-latest"
    assert "illicit" not in body["results"][0]["categories"]
    assert "illicit/violent" not in body["results"][0]["categories"]
    assert "illicit/violent" in body["results"][0]["category_scores"]  # required by the SDK's types
    assert response.results[0].categories.illicit is None
    assert response.results[0].flagged


def test_image_parts_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.moderations.create(
            input=[
                {"type": "text", "text": "hello"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ]
        )
    assert info.value.param == "input[1].type"
    assert info.value.code == "unsupported_content_type"
    assert "text-only" in info.value.message


@pytest.mark.parametrize("bad", [[], 42, [{"type": "audio"}], [None]])
def test_bad_inputs_are_400(client: openai.OpenAI, bad: Any) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.moderations.create(input=bad)
    assert (info.value.param or "").startswith("input")


def test_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.moderations.create(input="hi", model="gpt-4o")
    assert info.value.code == "model_not_found"


def test_needs_a_valid_key(client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        client.with_options(api_key="sk-wrong").moderations.create(input="hi")
