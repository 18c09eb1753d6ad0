"""What goes into the engine and what comes out of it. Plain dataclasses; no torch here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """OpenAI's sampling knobs, already validated by the caller (``api/schemas/chat.py``)."""

    max_tokens: int | None = None  # None: up to the context length
    temperature: float = 1.0  # 0 → greedy
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(frozen=True)
class Constraint:
    """What the whole reply must match: a grammar enforced while decoding (never by retries).

    Exactly one of ``json_schema`` (the reply is one JSON value valid for it) and ``lark`` (a
    grammar in llguidance's Lark dialect, which may embed JSON Schemas with ``%json {...}``; tool
    calls use it) is set; build them with ``afinar.inference.grammar``. JSON is compact, as
    ``json.dumps`` writes it. The constraint covers the reply *including* ``response_prefix``.
    Tokens that would leave the grammar are never sampled, and the reply ends (EOS is forced) as
    soon as the grammar admits nothing more; a reply cut by ``max_tokens`` ends with
    ``finish_reason: "length"`` and may be incomplete. Stop strings do not apply to it.
    """

    json_schema: dict[str, Any] | None = None
    lark: str | None = None
    lenient: bool = False  # ignore JSON Schema keywords the compiler does not implement (non-strict)
    param: str | None = None  # the request field it comes from, named in errors (e.g. "tools")


@dataclass(frozen=True)
class GenerationRequest:
    """One chat completion for an engine: the request type every serving backend receives.

    ``constraint`` is part of the contract, not a hint: each backend must guarantee that the reply
    matches it. The built-in engine masks tokens with llguidance (``inference/guide.py``); a
    llama.cpp backend passes ``json_schema`` as its ``json_schema`` (or a GBNF grammar) and a vLLM
    backend uses its structured outputs (a JSON schema, or a grammar with the ``guidance``
    backend, which is llguidance and reads this same Lark dialect). A backend that cannot continue a prefilled
    reply under a grammar may drop ``response_prefix``: the grammar then forces the same text.
    """

    base_path: Path
    messages: list[dict[str, Any]]
    adapter_path: Path | None = None
    tools: list[dict[str, Any]] | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    context_length: int | None = None  # None: the model config's max_position_embeddings
    # Text forced at the start of the reply (appended to the prompt, reported as output):
    # "{" for JSON replies, the opening of a tool call for tool_choice "required"/named.
    response_prefix: str = ""
    constraint: Constraint | None = None  # None: free text (no per-step cost at all)


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int] | None


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "logprob": self.logprob,
            "bytes": self.bytes,
            "top_logprobs": [
                {"token": t.token, "logprob": t.logprob, "bytes": t.bytes} for t in self.top_logprobs
            ],
        }


# --- Events a streaming generation yields, in this order ------------------------------------


@dataclass(frozen=True)
class Started:
    """The prompt was rendered, tokenised and accepted; generation is about to begin."""

    prompt_tokens: int


@dataclass(frozen=True)
class Delta:
    """New text for one choice (``text`` may be empty when only logprobs are new)."""

    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True)
class Finished:
    index: int
    finish_reason: str  # stop (EOS, a stop string, or a constraint completed) | length
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    """Generation failed; ``error`` is an ``AfinarError`` (before ``Started``) or any exception."""

    error: BaseException


Event = Started | Delta | Finished | Failed


# --- Non-streaming result ---------------------------------------------------------------


@dataclass
class Choice:
    index: int
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None


@dataclass
class GenerationResult:
    prompt_tokens: int
    choices: list[Choice]

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)
