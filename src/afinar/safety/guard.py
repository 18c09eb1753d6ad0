"""The guard-model moderation backend: ask a Llama-Guard-style LLM, parse "safe" / "unsafe S1,S2".

The guard model is a catalogue base model (``AFINAR_MODERATION_GUARD_MODEL``) served by the
same inference engine as chat (the container's ``engine``), greedy, a few tokens per text; texts are
submitted together so the engine batches them.

Two prompt modes (``AFINAR_MODERATION_GUARD_PROMPT``):

* ``instruction`` (default) — Afinar writes the Llama Guard 3 task prompt (taxonomy S1–S14,
  the text as the ``User`` turn) and sends it as one user message: works with any instruction
  model that can follow it;
* ``template`` — the text is sent as the user message and the guard model's own chat template
  builds the task prompt: the right mode for Meta's Llama Guard 3 / 4 checkpoints, whose
  templates do exactly that (and would otherwise wrap our prompt a second time).

The answer's first line must read ``safe`` or ``unsafe``; after ``unsafe``, the S-codes name the
hazard categories. ``LLAMA_GUARD_3_TO_OPENAI`` maps them onto OpenAI's categories; a mapped
category scores 1.0, everything else 0.0. Llama Guard has no notion of OpenAI's subcategories
(``*/threatening``, ``self-harm/intent``…), so only the mapped ones are ever set, and codes
with no OpenAI counterpart (S6 specialised advice, S7 privacy, S8 IP, S13 elections) flag
nothing. An answer that cannot be parsed is logged and counts as safe.

Tested here with a tiny random model for the plumbing and the parser only: real use needs a real
guard model (e.g. Llama Guard 3 1B/8B as a local catalogue entry).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afinar.safety.categories import CATEGORIES

if TYPE_CHECKING:
    from afinar.catalog.registry import Catalog
    from afinar.inference.protocol import InferenceEngine

log = logging.getLogger(__name__)

PROMPT_MODES = ("instruction", "template")
CONTEXT_RETRIES = 6  # halve an over-long text at most this many times

LLAMA_GUARD_3_CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}

LLAMA_GUARD_3_TO_OPENAI: dict[str, tuple[str, ...]] = {
    "S1": ("violence", "illicit", "illicit/violent"),
    "S2": ("illicit",),
    "S3": ("sexual", "illicit"),
    "S4": ("sexual", "sexual/minors"),
    "S5": ("harassment",),
    "S6": (),
    "S7": (),
    "S8": (),
    "S9": ("violence", "illicit", "illicit/violent"),
    "S10": ("hate",),
    "S11": ("self-harm",),
    "S12": ("sexual",),
    "S13": (),
    "S14": ("illicit",),
}

_TASK = (
    "Task: Check if there is unsafe content in 'User' messages in conversations according our "
    "safety policy with the below categories.\n\n"
    "<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
    "<BEGIN CONVERSATION>\n\nUser: {text}\n\n<END CONVERSATION>\n\n"
    "Provide your safety assessment for ONLY THE LAST User message in the above conversation:\n"
    " - First line must read 'safe' or 'unsafe'.\n"
    " - If unsafe, a second line must include a comma-separated list of violated categories."
)


def guard_prompt(text: str) -> str:
    categories = "\n".join(f"{code}: {name}." for code, name in LLAMA_GUARD_3_CATEGORIES.items())
    return _TASK.format(categories=categories, text=text)


@dataclass(frozen=True)
class GuardVerdict:
    safe: bool | None  # None: the answer could not be parsed
    codes: tuple[str, ...] = ()

    def scores(self) -> dict[str, float]:
        out = dict.fromkeys(CATEGORIES, 0.0)
        if self.safe is False:
            for code in self.codes:
                for category in LLAMA_GUARD_3_TO_OPENAI.get(code, ()):
                    out[category] = 1.0
        return out


_CODE = re.compile(r"\bS(\d{1,2})\b", re.IGNORECASE)


def parse_guard_output(answer: str) -> GuardVerdict:
    """``"safe"`` → safe; ``"unsafe\\nS1,S10"`` → unsafe with codes; anything else → unparsed."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return GuardVerdict(None)
    head = lines[0].lower().strip(" .:'\"*")
    if head.startswith("unsafe"):
        rest = " ".join([lines[0][len("unsafe") :], *lines[1:]])
        codes = [f"S{int(n)}" for n in _CODE.findall(rest)]
        known = tuple(dict.fromkeys(c for c in codes if c in LLAMA_GUARD_3_CATEGORIES))
        return GuardVerdict(False, known)
    if head.startswith("safe"):
        return GuardVerdict(True)
    return GuardVerdict(None)


class GuardBackend:
    name = "guard"

    def __init__(
        self,
        engine: Any,
        base_path: Path,
        *,
        model_id: str,
        context_length: int | None = None,
        prompt_mode: str = "instruction",
        max_new_tokens: int = 16,
        concurrency: int = 8,
        timeout_s: float = 120.0,
    ) -> None:
        if prompt_mode not in PROMPT_MODES:
            raise ValueError(f"unknown guard prompt mode {prompt_mode!r}; expected one of {PROMPT_MODES}")
        self.engine = engine
        self.base_path = Path(base_path)
        self.model_id = model_id
        self.context_length = context_length
        self.prompt_mode = prompt_mode
        self.max_new_tokens = max_new_tokens
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self.unparsed = 0  # answers that were neither "safe" nor "unsafe" (a wrong model, say)
        self.last_answers: list[str] = []  # the raw answers of the latest call, for diagnosis

    @classmethod
    def from_catalog(
        cls,
        catalog: Catalog,
        models_dir: Path,
        engine: InferenceEngine,
        model_id: str,
        *,
        prompt_mode: str = "instruction",
    ) -> GuardBackend:
        entry = catalog.require(model_id, param="moderation_guard_model")
        path = catalog.local_path(entry, models_dir)
        return cls(
            engine,
            path,
            model_id=model_id,
            context_length=entry.context_length,
            prompt_mode=prompt_mode,
        )

    def _max_chars(self) -> int:
        # Leave room for the task prompt (~450 tokens) and the answer; ~3 characters a token.
        tokens = (self.context_length or 4096) - 600 - self.max_new_tokens
        return max(500, tokens * 3)

    def messages(self, text: str) -> list[dict[str, str]]:
        text = text[: self._max_chars()]
        content = text if self.prompt_mode == "template" else guard_prompt(text)
        return [{"role": "user", "content": content}]

    def ask(self, text: str) -> str:
        """The guard's answer for one text; a text too long for the context is cut and retried."""
        from afinar.errors import AfinarError, ServerError
        from afinar.inference.types import GenerationRequest, SamplingParams

        for _ in range(CONTEXT_RETRIES):
            request = GenerationRequest(
                base_path=self.base_path,
                messages=self.messages(text),
                params=SamplingParams(max_tokens=self.max_new_tokens, temperature=0.0),
                context_length=self.context_length,
            )
            try:
                result = self.engine.generate_sync(request, timeout=self.timeout_s)
            except AfinarError as exc:
                if exc.code != "context_length_exceeded" or len(text) <= 1:
                    raise
                text = text[: len(text) // 2]
                continue
            return str(result.choices[0].text) if result.choices else ""
        raise ServerError(
            f"The guard model {self.model_id} has too short a context for its moderation prompt."
        )

    def scores(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(texts))) as pool:
            answers = list(pool.map(self.ask, texts))
        self.last_answers = answers
        out = []
        for answer in answers:
            verdict = parse_guard_output(answer)
            if verdict.safe is None:
                self.unparsed += 1
                log.warning("guard model %s gave an unparseable answer: %.80r", self.model_id, answer)
            out.append(verdict.scores())
        return out
