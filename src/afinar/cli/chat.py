"""``afinar chat MODEL``: talk to a base or fine-tuned model, streaming the answer as it is generated.

Interactive by default: type a message, get the answer; ``/reset`` forgets the conversation,
``/exit`` (or end of input) leaves. ``--message`` asks one question and exits, for scripts;
with ``--json`` each answer is the whole chat completion object, not streamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import typer

from afinar.cli.client import make_client
from afinar.cli.output import JSON_OPTION, note, print_json

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionMessageParam

PROMPT = "you> "
_EXIT = {"/exit", "/quit"}


@dataclass(frozen=True)
class Sampling:
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None


def _answer(
    client: openai.OpenAI, s: Sampling, messages: list[ChatCompletionMessageParam], json_out: bool
) -> str:
    import openai

    max_tokens = openai.omit if s.max_tokens is None else s.max_tokens
    temperature = openai.omit if s.temperature is None else s.temperature
    seed = openai.omit if s.seed is None else s.seed
    completions = client.chat.completions
    if json_out:
        completion = completions.create(
            model=s.model, messages=messages, max_tokens=max_tokens, temperature=temperature, seed=seed
        )
        print_json(completion)
        return (completion.choices[0].message.content or "") if completion.choices else ""
    parts: list[str] = []
    stream = completions.create(
        model=s.model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        stream=True,
    )
    try:
        for chunk in stream:
            for choice in chunk.choices:
                if choice.index == 0 and choice.delta.content:
                    parts.append(choice.delta.content)
                    typer.echo(choice.delta.content, nl=False)
    except KeyboardInterrupt:
        stream.close()
        note("[interrupted]")
    typer.echo("")
    return "".join(parts)


def chat(
    model: str = typer.Argument(..., help="A base model or a fine-tuned model name (ft:...)."),
    system: str = typer.Option(None, "--system", "-s", help="A system message to start with."),
    message: str = typer.Option(None, "--message", "-m", help="Ask this one question and exit."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help="At most this many tokens per answer."),
    temperature: float = typer.Option(None, "--temperature", min=0.0, max=2.0, help="Sampling temperature."),
    seed: int = typer.Option(None, help="Seed for reproducible sampling."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Chat with a model (interactive, streaming); /reset forgets, /exit leaves."""
    client = make_client()
    sampling = Sampling(model, max_tokens, temperature, seed)
    start: list[ChatCompletionMessageParam] = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    if message is not None:
        messages.append({"role": "user", "content": message})
        _answer(client, sampling, messages, json_out)
        return
    if not json_out:
        note(f"Chatting with {model}; /reset forgets the conversation, /exit or Ctrl-D leaves.")
    while True:
        try:
            line = input(PROMPT).strip()
        except (EOFError, KeyboardInterrupt):
            typer.echo("")
            return
        if not line:
            continue
        if line in _EXIT:
            return
        if line == "/reset":
            messages = list(start)
            note("Conversation reset.")
            continue
        messages.append({"role": "user", "content": line})
        messages.append({"role": "assistant", "content": _answer(client, sampling, messages, json_out)})
