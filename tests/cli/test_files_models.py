"""``afinar files`` and ``afinar models`` against a live server; errors and exit codes."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import Cli
from tests.support.data import chat_file
from tests.support.tiny_model import TINY


def test_files_upload_list_delete(cli: Cli, tmp_path: Path) -> None:
    path = chat_file(tmp_path / "shop.jsonl", 12)
    uploaded = cli.json("files", "upload", str(path))
    assert uploaded["id"].startswith("file-") and uploaded["filename"] == "shop.jsonl"
    assert uploaded["purpose"] == "fine-tune" and uploaded["bytes"] == path.stat().st_size

    listed = cli.json("files", "list")
    assert listed["object"] == "list" and uploaded["id"] in [f["id"] for f in listed["data"]]
    table = cli("files", "list", "--purpose", "fine-tune")
    assert table.exit_code == 0 and uploaded["id"] in table.stdout and "shop.jsonl" in table.stdout

    human = cli("files", "upload", str(path))
    assert human.exit_code == 0 and "file-" in human.stdout

    deleted = cli.json("files", "delete", uploaded["id"])
    assert deleted == {"id": uploaded["id"], "object": "file", "deleted": True}
    assert uploaded["id"] not in [f["id"] for f in cli.json("files", "list")["data"]]

    again = cli("files", "delete", uploaded["id"])
    assert again.exit_code == 1
    assert again.stderr.startswith("error: ") and uploaded["id"] in again.stderr
    assert again.stdout == ""


def test_models_list(cli: Cli) -> None:
    models = cli.json("models", "list")
    ids = {m["id"] for m in models["data"]}
    assert TINY in ids
    table = cli("models", "list")
    assert table.exit_code == 0 and TINY in table.stdout


def test_models_delete_unknown_is_one_error_line(cli: Cli) -> None:
    result = cli("models", "delete", "ft:tiny-llama:default:none:abcdefgh")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.output


def test_bad_key_unreachable_server_and_missing_key(cli: Cli) -> None:
    denied = cli("files", "list", env={"AFINAR_API_KEY": "sk-wrong"})
    assert denied.exit_code == 1 and denied.stderr.startswith("error: invalid_api_key: ")

    gone = cli("files", "list", env={"AFINAR_BASE_URL": "http://127.0.0.1:9/v1"})
    assert gone.exit_code == 1
    assert gone.stderr.startswith("error: connection_error: cannot reach the server at http://127.0.0.1:9")

    keyless = cli("models", "list", env={"AFINAR_API_KEY": None})
    assert keyless.exit_code == 2 and "AFINAR_API_KEY" in keyless.stderr


def test_openai_variables_are_the_fallback(cli: Cli) -> None:
    env = dict(cli.env)
    openai_env = {"OPENAI_BASE_URL": env["AFINAR_BASE_URL"], "OPENAI_API_KEY": env["AFINAR_API_KEY"]}
    result = cli(
        "models", "list", "--json", env={"AFINAR_BASE_URL": None, "AFINAR_API_KEY": None, **openai_env}
    )
    assert result.exit_code == 0, result.output
