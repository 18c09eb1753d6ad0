"""``client.fine_tuning.alpha.graders.run/validate`` through the official SDK: the Evals API's graders."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.fine_tuning.alpha import GraderRunResponse, GraderValidateResponse
from openai.types.graders import StringCheckGrader

from afinar.evals import criteria as crit
from afinar.evals import template as tpl
from tests.support.evals import ScriptedEngine
from tests.support.tiny_model import TINY

CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


def run(client: openai.OpenAI, grader: dict[str, Any], sample: str, item: Any = None) -> GraderRunResponse:
    kw: dict[str, Any] = {} if item is None else {"item": item}
    raw = client.fine_tuning.alpha.graders.with_raw_response.run(grader=grader, model_sample=sample, **kw)  # type: ignore[arg-type]
    # strict: every field of the SDK's type, read from the body itself
    return GraderRunResponse.model_validate(raw.http_response.json())


def test_validate_returns_the_grader(client: openai.OpenAI) -> None:
    raw = client.fine_tuning.alpha.graders.with_raw_response.validate(grader=CHECK)  # type: ignore[arg-type]
    checked = GraderValidateResponse.model_validate(raw.http_response.json())
    assert isinstance(checked.grader, StringCheckGrader)
    assert checked.grader.model_dump() == CHECK
    assert client.fine_tuning.alpha.graders.validate(grader=CHECK).grader == checked.grader  # type: ignore[arg-type]


def test_string_check_passes_and_fails(client: openai.OpenAI) -> None:
    passed = run(client, CHECK, "Paris", {"answer": "Paris"})
    assert passed.reward == 1.0 and passed.sub_rewards == {}
    assert passed.metadata.name == "exact" and passed.metadata.type == "string_check"
    assert passed.metadata.scores["passed"] is True
    assert not any(v for k, v in passed.metadata.errors.model_dump().items() if isinstance(v, bool))
    assert passed.metadata.token_usage is None and passed.api_model_grader_token_usage_per_model == {}
    failed = run(client, CHECK, "London", {"answer": "Paris"})
    assert failed.reward == 0.0 and failed.metadata.scores["passed"] is False
    like = run(
        client,
        {**CHECK, "operation": "ilike", "reference": "{{item.city}}"},
        "It is PARIS.",
        {"city": "paris"},
    )
    assert like.reward == 1.0


def test_a_placeholder_the_item_lacks_is_an_invalid_variable(client: openai.OpenAI) -> None:
    out = run(client, CHECK, "Paris", {"other": "x"})
    assert out.reward == 0.0 and out.metadata.errors.invalid_variable_error
    assert not out.metadata.errors.api_model_grader_parse_error


def test_text_similarity_gives_the_evals_api_score(client: openai.OpenAI) -> None:
    grader = {
        "type": "text_similarity",
        "name": "sim",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "evaluation_metric": "rouge_l",
    }
    item = {"reference": "the cat sat on the mat"}
    sample = "a cat sat on a mat"
    checked = client.fine_tuning.alpha.graders.validate(grader=grader)  # type: ignore[arg-type]
    assert (
        checked.grader is not None and checked.grader.model_dump() == grader
    )  # no implicit threshold echoed
    out = run(client, grader, sample, item)
    criterion = crit.check_criterion({**grader, "pass_threshold": 0.5}, 0)  # as an eval would store it
    expected = crit.text_similarity(criterion, tpl.context(item, {"output_text": sample})).score
    assert 0.0 < expected < 1.0 and out.reward == expected


def test_score_model_judges_through_the_engine(client: openai.OpenAI, container: Any) -> None:
    engine = ScriptedEngine(lambda r: "0.8" if "Paris" in r.messages[-1]["content"] else "no idea")
    container._engine = engine
    grader = {
        "type": "score_model",
        "name": "judge",
        "model": TINY,
        "input": [{"role": "user", "content": "Q: {{item.q}} A: {{sample.output_text}}"}],
        "range": [0, 1],
    }
    good = run(client, grader, "Paris", {"q": "Capital of France?"})
    assert good.reward == 0.8 and good.metadata.sampled_model_name == TINY
    assert good.metadata.token_usage == 14  # the scripted engine: 11 prompt + 3 completion tokens
    assert good.api_model_grader_token_usage_per_model[TINY] == {
        "prompt_tokens": 11,
        "completion_tokens": 3,
        "total_tokens": 14,
        "cached_tokens": 0,
    }
    assert engine.requests[0].messages[-1]["content"] == "Q: Capital of France? A: Paris"
    unparsed = run(client, grader, "Lyon", {"q": "Capital of France?"})
    assert unparsed.reward == 0.0 and unparsed.metadata.errors.api_model_grader_parse_error
    labels = {**grader, "type": "label_model", "labels": ["right", "wrong"], "passing_labels": ["right"]}
    del labels["range"]
    engine.answer = lambda r: "right" if "Paris" in r.messages[-1]["content"] else "wrong"
    labelled = run(client, labels, "Paris", {"q": "Capital of France?"})
    assert labelled.reward == 1.0 and labelled.metadata.scores["label"] == "right"
    assert run(client, labels, "Lyon", {"q": "Capital of France?"}).reward == 0.0


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({**CHECK, "type": "regex_check"}, "grader.type"),
        ({"type": "python", "name": "p", "source": "def grade(s, i): return 1"}, "grader.type"),
        ({"type": "multi", "name": "m", "graders": {}, "calculate_output": "1"}, "grader.type"),
        ({**CHECK, "operation": "regex"}, "grader.operation"),
        ({**CHECK, "input": "{{foo.bar}}"}, "grader.input"),
        (
            {
                **CHECK,
                "type": "score_model",
                "model": "no-such-model",
                "input": [{"role": "user", "content": "x"}],
            },
            "grader.model",
        ),
    ],
)
def test_bad_graders_are_refused_with_the_param(
    client: openai.OpenAI, grader: dict[str, Any], param: str
) -> None:
    for call in (
        lambda: client.fine_tuning.alpha.graders.validate(grader=grader),  # type: ignore[arg-type]
        lambda: client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x"),  # type: ignore[arg-type]
    ):
        with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as err:
            call()
        assert err.value.body["param"] == param  # type: ignore[index]
        assert err.value.status_code == (404 if param == "grader.model" else 400)


def test_run_needs_a_string_sample_and_an_object_item(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.alpha.graders.run(grader=CHECK, model_sample=None)  # type: ignore[arg-type]
    assert err.value.body["param"] == "model_sample"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.alpha.graders.run(grader=CHECK, model_sample="x", item=[1])  # type: ignore[arg-type]
    assert err.value.body["param"] == "item"  # type: ignore[index]
