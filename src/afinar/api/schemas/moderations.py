"""Wire shapes for ``POST /v1/moderations`` (contract §1.7): the request model and the response."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from afinar.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from afinar.safety.moderation import ModerationResult

DEFAULT_MODEL = "omni-moderation-latest"
OMNI_MODELS = ("omni-moderation-latest", "omni-moderation-2024-09-26")
TEXT_MODELS = ("text-moderation-latest", "text-moderation-stable")
MAX_INPUTS = 1000
MAX_TOTAL_CHARS = 2_000_000


def moderation_id() -> str:
    return "modr-" + secrets.token_hex(16)


@dataclass(frozen=True)
class ModerationRequest:
    """A checked moderation request: the texts, and the model name to echo."""

    texts: list[str]
    model: str


class CreateModerationRequest(BaseModel):
    """The body of ``POST /v1/moderations``: every check raises OpenAI's own message."""

    model_config = ConfigDict(extra="allow")

    model: Any = None
    input: Any = None

    _domain: ModerationRequest | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> CreateModerationRequest:
        model = DEFAULT_MODEL if self.model is None else self.model
        if not isinstance(model, str) or not model:
            raise InvalidRequest("Invalid type for 'model': expected a string.", param="model")
        if model not in OMNI_MODELS + TEXT_MODELS:
            raise NotFound(
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        raw = self.input
        if raw is None:
            raise InvalidRequest("Missing required parameter: 'input'.", param="input")
        if isinstance(raw, str):
            texts = [raw]
        elif isinstance(raw, list):
            if not raw:
                raise InvalidRequest("Invalid 'input': expected at least one item.", param="input")
            texts = [_item(item, i) for i, item in enumerate(raw)]
        else:
            raise InvalidRequest(
                "Invalid type for 'input': expected a string, an array of strings, or an array of content "
                "parts.",
                param="input",
            )
        if len(texts) > MAX_INPUTS:
            raise InvalidRequest(f"'input' may contain at most {MAX_INPUTS} items.", param="input")
        if sum(len(t) for t in texts) > MAX_TOTAL_CHARS:
            raise InvalidRequest(
                f"'input' may contain at most {MAX_TOTAL_CHARS} characters in all.", param="input"
            )
        self._domain = ModerationRequest(texts, model)
        return self

    def to_domain(self) -> ModerationRequest:
        assert self._domain is not None  # set by the validator
        return self._domain


def _item(item: Any, i: int) -> str:
    where = f"input[{i}]"
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        kind = item.get("type")
        if kind == "text":
            text = item.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(
                    f"Invalid type for '{where}.text': expected a string.", param=f"{where}.text"
                )
            return text
        if kind == "image_url":
            raise InvalidRequest(
                "This server's moderation models are text-only: content parts of type 'image_url' are not "
                "supported.",
                param=f"{where}.type",
                code="unsupported_content_type",
            )
        raise InvalidRequest(
            f"Invalid value for '{where}.type': {kind!r}. Supported values are: 'text' and 'image_url'.",
            param=f"{where}.type",
        )
    raise InvalidRequest(
        f"Invalid type for '{where}': expected a string or a content part object.", param=where
    )


def moderation_object(model: str, results: list[ModerationResult]) -> dict[str, Any]:
    include_illicit = model not in TEXT_MODELS
    return {
        "id": moderation_id(),
        "model": model,
        "results": [r.to_dict(include_illicit=include_illicit) for r in results],
    }
