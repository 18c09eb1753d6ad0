"""``afinar chat`` (streaming, one-shot and interactive) and ``afinar usage`` against a live server."""

from __future__ import annotations

import httpx
import pytest

from tests.support.cli import Cli
from tests.support.server import API_KEY, Server
from tests.support.tiny_model import TINY


def test_chat_one_question_streams_the_answer(cli: Cli) -> None:
    result = cli("chat", TINY, "-m", "Which wheels for street?", "--max-tokens", "6", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("\n") and result.stdout.strip()


def test_chat_json_is_the_completion_object(cli: Cli) -> None:
    completion = cli.json("chat", TINY, "-m", "hi", "--max-tokens", "4", "-s", "Be brief.")
    assert completion["object"] == "chat.completion" and completion["model"] == TINY
    assert completion["usage"]["completion_tokens"] <= 4
    assert isinstance(completion["choices"][0]["message"]["content"], str)


def test_chat_interactive_until_end_of_input(cli: Cli) -> None:
    result = cli("chat", TINY, "--max-tokens", "3", input="hello\n/reset\nagain\n/exit\nnever sent\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("you> ") == 4  # hello, /reset, again, /exit: the last line is never read
    assert "Conversation reset." in result.stderr


def test_chat_unknown_model_is_one_error_line(cli: Cli) -> None:
    result = cli("chat", "no-such-model", "-m", "hi")
    assert result.exit_code == 1 and result.stderr.startswith("error: ")


def test_usage(cli: Cli, server: Server) -> None:
    probe = httpx.get(
        f"{server.base_url}/organization/costs",
        params={"start_time": 0},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    if probe.status_code == 404:
        result = cli("usage")  # the command still fails cleanly: one line, exit 1
        assert result.exit_code == 1 and result.stderr.startswith("error: ")
        pytest.skip(
            "GET /v1/organization/costs is not served yet (the usage/billing route is missing), "
            "so `afinar usage` has nothing to show"
        )
    costs = cli.json("usage", "--days", "3")
    assert costs["object"] == "page" and isinstance(costs["data"], list)
    assert all(b["object"] == "bucket" for b in costs["data"])
    table = cli("usage", "--group-by", "none")
    assert table.exit_code == 0, table.output
    assert "osts since" in table.stdout and "Month to date:" in table.stdout
