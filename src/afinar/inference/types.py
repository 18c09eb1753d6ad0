"""What goes into the engine and what comes out of it. Plain dataclasses; no torch here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """OpenAI's sampling knobs, already validated by the caller (``services/chat.py``)."""

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
class GenerationRequest:
    base_path: Path
    messages: list[dict[str, Any]]
    adapter_path: Path | None = None
    tools: list[dict[str, Any]] | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    context_length: int | None = None  # None: the model config's max_position_embeddings
    # Text forced at the start of the reply (appended to the prompt, reported as output):
    # "{" for json_object, the opening of a tool call for tool_choice "required"/named.
    response_prefix: str = ""


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
    finish_reason: str  # stop | length
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
