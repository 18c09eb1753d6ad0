"""The official ``openai`` SDK client the CLI talks through, built from ``Settings``.

Server: ``AFINAR_BASE_URL``, else ``OPENAI_BASE_URL``, else the local ``afinar serve`` address
(``AFINAR_HOST``/``AFINAR_PORT``). Key: ``AFINAR_API_KEY``, else ``OPENAI_API_KEY``, else the
operator's ``AFINAR_BOOTSTRAP_API_KEY``. The same key is sent to the admin (usage) routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from afinar.cli.output import EXIT_USAGE, fail
from afinar.config import Settings

if TYPE_CHECKING:
    import openai

_ANY_ADDRESS = {"0.0.0.0", "::", ""}


def base_url(settings: Settings) -> str:
    if settings.base_url or settings.openai_base_url:
        return (settings.base_url or settings.openai_base_url).rstrip("/")
    host = "127.0.0.1" if settings.host in _ANY_ADDRESS else settings.host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/v1"


def make_client(settings: Settings | None = None) -> openai.OpenAI:
    import openai

    settings = settings if settings is not None else Settings()
    key = settings.api_key or settings.openai_api_key or settings.bootstrap_api_key
    if not key:
        fail(
            "missing_api_key",
            "set AFINAR_API_KEY (or OPENAI_API_KEY) to an API key of your organisation",
            EXIT_USAGE,
        )
    return openai.OpenAI(
        base_url=base_url(settings), api_key=key, admin_api_key=key, max_retries=2, timeout=120
    )


def explain(exc: BaseException) -> tuple[str, str] | None:
    """``(code, message)`` for an error raised by the SDK, or None when it is not one."""
    if not type(exc).__module__.startswith("openai"):
        return None
    import openai

    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message:
            message = exc.response.text.strip() or exc.response.reason_phrase
        return exc.code or f"http_{exc.status_code}", message
    if isinstance(exc, openai.APITimeoutError):
        return (
            "timeout",
            f"the server at {exc.request.url.copy_with(path='/', query=None)} did not answer in time",
        )
    if isinstance(exc, openai.APIConnectionError):
        origin = str(exc.request.url.copy_with(path="/", query=None)).rstrip("/")
        return "connection_error", f"cannot reach the server at {origin} (set AFINAR_BASE_URL)"
    if isinstance(exc, openai.OpenAIError):
        return "client_error", str(exc)
    return None
