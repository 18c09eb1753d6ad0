"""Billing: the price book, rating in integer micro-dollars, the free allowance and spend limits.

The rating modules are pure. The two functions here are the serving path's entry points; they
delegate to the container's usage service (``afinar.services.usage``)::

    billing.check_chat_allowed(container, principal)    # before generating: 429 insufficient_quota
    billing.record_inference(container, principal, completion_id, model_name, base_id,
                             prompt_tokens, completion_tokens)   # once per completion, any number of times
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from afinar.services.container import Container
    from afinar.services.orgs import Principal


def check_chat_allowed(container: Container, principal: Principal) -> None:
    """Raise ``afinar.errors.QuotaExceeded`` when the organisation (or the key's project) has reached
    its monthly hard spend limit."""
    container.usage.check_chat_allowed(principal)


def record_inference(
    container: Container,
    principal: Principal,
    completion_id: str,
    model_name: str,
    base_id: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> bool:
    """Meter one chat completion (all its choices; streamed or not) at ``base_id``'s prices.

    Idempotent by ``completion_id``: True when this call wrote the record, False when it existed.
    """
    return container.usage.record_inference(
        principal, completion_id, model_name, base_id, prompt_tokens, completion_tokens
    )
