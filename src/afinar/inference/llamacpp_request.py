"""The llama.cpp backend's wire mapping: one choice of a :class:`GenerationRequest` as a body
for llama.cpp's completion endpoint, and its answer (logprobs, finish reasons, errors) back.

Every request field maps to llama.cpp's own sampling parameters (OpenAI's temperature and top_p,
llama.cpp's extra samplers off); none is refused (``docs/api.md`` lists the backends'
differences: logprobs and the forced-prefix token count).
"""

from __future__ import annotations

import json
from typing import Any

from afinar.inference.grammar import JSON_STYLE
from afinar.inference.types import Constraint, GenerationRequest, TokenLogprob, TopLogprob


def completion_body(
    request: GenerationRequest,
    prompt: list[int],
    max_new: int,
    lora: list[dict[str, Any]],
    index: int,
) -> dict[str, Any]:
    """llama.cpp's completion request for choice ``index``: the prompt's token ids, at most
    ``max_new`` tokens, with the explicit LoRA scales ``lora`` (OpenAI's sampling, nothing of
    llama.cpp's)."""
    params = request.params
    body: dict[str, Any] = {
        "prompt": prompt,
        "max_tokens": max_new,
        "cache_prompt": False,
        "temperature": params.temperature,
        "top_p": params.top_p,
        # llama.cpp's own samplers off: OpenAI's temperature and top_p only
        "top_k": 0,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_penalty": 1.0,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "lora": lora,
    }
    if params.seed is not None:
        body["seed"] = (params.seed + index) % (2**32 - 1)  # choices of one request differ
    if params.logit_bias:
        body["logit_bias"] = [[token, bias] for token, bias in params.logit_bias.items()]
    if params.logprobs:
        body["n_probs"] = max(1, params.top_logprobs)
    if request.constraint is not None:
        body["grammar"] = "%llguidance {}\n" + lark(request.constraint)
    elif params.stop:
        body["stop"] = list(params.stop)
    return body


def lark(constraint: Constraint) -> str:
    """The constraint as llguidance Lark (a JSON Schema becomes ``start: %json {...}``)."""
    if constraint.lark is not None:
        return constraint.lark
    options = {**JSON_STYLE, "lenient": True} if constraint.lenient else JSON_STYLE
    return "start: %json " + json.dumps({**(constraint.json_schema or {}), "x-guidance": options}) + "\n"


def logprobs(data: Any, top: int) -> list[TokenLogprob] | None:
    """A chunk's ``logprobs`` as ours, each with at most ``top`` alternatives."""
    if not isinstance(data, dict) or not data.get("content"):
        return None
    return [
        TokenLogprob(
            token=str(item.get("token", "")),
            logprob=float(item.get("logprob", 0.0)),
            bytes=item.get("bytes"),
            top_logprobs=[
                TopLogprob(
                    token=str(t.get("token", "")), logprob=float(t.get("logprob", 0.0)), bytes=t.get("bytes")
                )
                for t in (item.get("top_logprobs") or [])[:top]
            ],
        )
        for item in data["content"]
    ]


def finish_reason(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)
