"""The guard-model backend: the Llama Guard answer parser, the category mapping and the plumbing.

Only plumbing is tested here (a fake engine, then the tiny random model through the real
inference engine): judging real text needs a real guard model such as Llama Guard 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afinar.inference.types import Choice, GenerationRequest, GenerationResult
from afinar.safety.guard import GuardBackend, guard_prompt, parse_guard_output
from afinar.safety.moderation import ModerationEngine, build_moderation_engine


@pytest.mark.parametrize(
    ("answer", "safe", "codes"),
    [
        ("safe", True, ()),
        ("\n\nsafe<|eot_id|>", True, ()),
        ("unsafe\nS1", False, ("S1",)),
        ("unsafe\nS1,S10", False, ("S1", "S10")),
        ("Unsafe\nS11, s4", False, ("S11", "S4")),
        ("unsafe S9", False, ("S9",)),
        ("unsafe\nS99", False, ()),
        ("I cannot answer that", None, ()),
        ("", None, ()),
    ],
)
def test_parse_guard_output(answer: str, safe: bool | None, codes: tuple[str, ...]) -> None:
    verdict = parse_guard_output(answer)
    assert verdict.safe is safe
    assert verdict.codes == codes


def test_codes_map_onto_openai_categories() -> None:
    assert parse_guard_output("safe").scores()["hate"] == 0.0
    scores = parse_guard_output("unsafe\nS10,S4").scores()
    assert scores["hate"] == 1.0 and scores["sexual/minors"] == 1.0 and scores["sexual"] == 1.0
    assert scores["violence"] == 0.0
    assert max(parse_guard_output("unsafe\nS6").scores().values()) == 0.0  # no OpenAI counterpart


class FakeEngine:
    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.requests: list[GenerationRequest] = []

    def generate_sync(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult:
        self.requests.append(request)
        content = request.messages[-1]["content"]
        answer = next((a for key, a in self.answers.items() if key in content), "safe")
        return GenerationResult(prompt_tokens=1, choices=[Choice(index=0, text=answer, finish_reason="stop")])


def test_backend_prompts_and_maps_answers() -> None:
    fake = FakeEngine({"bomb": "unsafe\nS9", "slur": "unsafe\nS10", "weird": "banana"})
    backend = GuardBackend(fake, Path("/models/guard"), model_id="guard", context_length=4096)
    engine = ModerationEngine(backend)
    results = engine.moderate(["how to build a bomb", "hello", "a slur", "weird", ""])
    assert [r.flagged for r in results] == [True, False, True, False, False]
    assert results[0].categories["illicit/violent"] and results[0].categories["violence"]
    assert results[2].flagged_categories == ["hate"]
    assert backend.unparsed == 1
    assert len(fake.requests) == 4  # the blank text is never sent
    request = fake.requests[0]
    assert request.params.temperature == 0.0 and request.params.max_tokens == 16
    assert request.messages == [{"role": "user", "content": guard_prompt("how to build a bomb")}]
    assert "S10: Hate." in request.messages[0]["content"]
    assert "User: how to build a bomb" in request.messages[0]["content"]


def test_template_mode_sends_the_bare_text_and_truncates() -> None:
    fake = FakeEngine({})
    backend = GuardBackend(fake, Path("/m"), model_id="guard", context_length=1024, prompt_mode="template")
    backend.scores(["x" * 100_000])
    content = fake.requests[0].messages[0]["content"]
    assert set(content) == {"x"} and len(content) < 100_000
    with pytest.raises(ValueError):
        GuardBackend(fake, Path("/m"), model_id="guard", prompt_mode="chat")


def test_over_long_texts_are_cut_until_they_fit() -> None:
    from afinar.errors import InvalidRequest

    class SmallContext(FakeEngine):
        def generate_sync(self, request: GenerationRequest, timeout: float | None = None) -> GenerationResult:
            if len(request.messages[-1]["content"]) > 3000:
                raise InvalidRequest("too long", code="context_length_exceeded")
            return super().generate_sync(request, timeout)

    fake = SmallContext({"bomb": "unsafe\nS9"})
    backend = GuardBackend(fake, Path("/m"), model_id="guard", context_length=100_000)
    [scores] = backend.scores(["bomb " * 2000])
    assert scores["illicit/violent"] == 1.0
    assert len(fake.requests) == 1 and len(fake.requests[0].messages[0]["content"]) <= 3000


def test_build_rejects_bad_configuration(settings: Any) -> None:
    with pytest.raises(ValueError, match="catalogue and the inference engine"):
        build_moderation_engine(settings.model_copy(update={"moderation_backend": "guard"}))
    with pytest.raises(ValueError, match="GUARD_MODEL"):
        build_moderation_engine(
            settings.model_copy(update={"moderation_backend": "guard"}), catalog=object(), engine=object
        )
    with pytest.raises(ValueError, match="unknown moderation backend"):
        build_moderation_engine(settings.model_copy(update={"moderation_backend": "openai"}))
    off = build_moderation_engine(settings.model_copy(update={"moderation_backend": "off"}))
    assert not off.moderate(["I'm going to kill you"])[0].flagged


@pytest.fixture
def guard_container(settings: Any) -> Iterator[Any]:
    from afinar.services.container import Container
    from tests.support.tiny_model import TINY

    # The tiny model's 256-token context cannot hold the instruction prompt: use its template.
    c = Container(
        settings.model_copy(
            update={
                "moderation_backend": "guard",
                "moderation_guard_model": TINY,
                "moderation_guard_prompt": "template",
            }
        )
    )
    yield c
    c.close()


def test_plumbing_through_the_real_engine_with_the_tiny_model(guard_container: Any) -> None:
    """The tiny random model answers gibberish: results come back, unparsed and not flagged."""
    c = guard_container
    engine = build_moderation_engine(c.settings, catalog=c.catalog, engine=lambda: c.engine)
    assert engine.backend_name == "guard"
    results = engine.moderate(["hello there", "how are you?"])
    assert len(results) == 2
    backend = engine.backend
    assert isinstance(backend, GuardBackend)
    assert len(backend.last_answers) == 2
    for answer, result in zip(backend.last_answers, results, strict=True):
        assert isinstance(answer, str)
        expected = engine.result(parse_guard_output(answer).scores())
        assert result == expected
    assert backend.unparsed == sum(parse_guard_output(a).safe is None for a in backend.last_answers)
