"""validate_file / job_failure: every error and warning category, the cap, streaming, tokens."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afinar.datasets.encoding import encode_chat
from afinar.datasets.preference import preference_conversations
from afinar.datasets.report import FILE_LEVEL, ValidationReport
from afinar.datasets.validation import job_failure, validate_file, validate_lines
from tests.support.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    directory = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    return AutoTokenizer.from_pretrained(directory)


def chat(user: str = "Which wheels for street?", answer: str = "Hard 99A wheels.", **extra: Any) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant for a skateboard shop."},
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
        ],
        **extra,
    }


def pref(i: int = 0, *, suffix: str = "_output") -> dict:
    return {
        "input": {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"q{i}"}]
        },
        f"preferred{suffix}": [{"role": "assistant", "content": f"good answer {i}"}],
        f"non_preferred{suffix}": [{"role": "assistant", "content": f"bad answer {i}"}],
    }


def write(path: Path, lines: list[Any]) -> Path:
    with open(path, "wb") as f:
        for line in lines:
            if isinstance(line, bytes):
                f.write(line + b"\n")
            elif isinstance(line, str):
                f.write(line.encode() + b"\n")
            else:
                f.write(json.dumps(line).encode() + b"\n")
    return path


def good(n: int) -> list[dict]:
    return [chat(user=f"question {i}") for i in range(n)]


def run(tmp_path: Path, lines: list[Any], **kw: Any) -> ValidationReport:
    return validate_file(write(tmp_path / "train.jsonl", lines), **kw)


def only(report: ValidationReport) -> tuple[int, int | None, str, str]:
    assert report.n_errors_total == 1, report.errors
    p = report.errors[0]
    return p.example, p.message_index, p.code, p.message


# ---------------------------------------------------------------- clean files


def test_clean_chat_file(tmp_path: Path) -> None:
    report = run(tmp_path, good(12))
    assert report.ok and report.format == "chat" and report.n_examples == 12
    assert report.errors == () and report.warnings == ()
    assert report.messages_per_example is not None and report.messages_per_example.mean == 3
    assert report.total_tokens is None and report.token_histogram == ()
    assert job_failure(report) is None
    json.dumps(report.to_dict())


def test_blank_lines_are_skipped_and_examples_are_line_numbers(tmp_path: Path) -> None:
    report = run(tmp_path, [chat(), "", "   ", chat(user="x"), "{bad", *good(10)])
    assert report.n_examples == 13
    assert only(report)[:3] == (5, None, "invalid_json")


def test_utf8_bom_and_crlf_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(chat()).encode() + b"\r\n" + json.dumps(chat("y")).encode())
    report = validate_file(path)
    assert report.ok and report.n_examples == 2


def test_tool_calls_with_null_content_and_tool_results_are_valid(tmp_path: Path) -> None:
    example = {
        "messages": [
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"c": "Oslo"}'}}
                ],
                "weight": 0,
            },
            {"role": "tool", "tool_call_id": "c1", "content": "rain"},
            {"role": "assistant", "content": "It rains.", "weight": 1},
            {"role": "assistant", "content": None, "function_call": {"name": "w", "arguments": "{}"}},
            {"role": "function", "name": "w", "content": "rain"},
            {"role": "assistant", "content": "Still rain."},
        ],
        "tools": [{"type": "function", "function": {"name": "w", "parameters": {}}}],
        "parallel_tool_calls": False,
    }
    report = run(tmp_path, [example])
    assert report.ok, report.errors
    assert report.warnings == ()  # developer counts as a system message


# ---------------------------------------------------------------- structural errors


def test_invalid_json(tmp_path: Path) -> None:
    example, index, code, message = only(run(tmp_path, [chat(), chat("b"), '{"messages": [']))
    assert (example, index, code) == (3, None, "invalid_json")
    assert message.startswith("Example 3 cannot be parsed. Error: line contains invalid json:")


def test_non_utf8_bytes(tmp_path: Path) -> None:
    bad = b'{"messages": [{"role": "user", "content": "caf\xe9"}]}'
    example, _, code, message = only(run(tmp_path, [chat(), bad]))
    assert (example, code) == (2, "invalid_utf8")
    assert "Example 2 cannot be parsed" in message and "0xe9" in message


@pytest.mark.parametrize(
    ("line", "kind"), [("[1, 2]", "an array"), ('"text"', "a string"), ("42", "a number")]
)
def test_line_that_is_not_an_object(tmp_path: Path, line: str, kind: str) -> None:
    assert only(run(tmp_path, [chat(), line])) == (
        2,
        None,
        "not_an_object",
        f"Example 2 must be a JSON object, not {kind}.",
    )


def test_missing_and_empty_messages(tmp_path: Path) -> None:
    report = run(tmp_path, [chat(), {"messages": []}, {"messages": "hi"}, {"tools": []}])
    got = [(p.example, p.code, p.message) for p in report.errors]
    assert got == [
        (2, "missing_messages", "Example 2: 'messages' must be a non-empty list."),
        (3, "missing_messages", "Example 3: 'messages' must be a non-empty list."),
        (4, "missing_messages", "Example 4 is missing key 'messages'."),
    ]


def test_unknown_role_and_missing_role(tmp_path: Path) -> None:
    bad = chat()
    bad["messages"][1]["role"] = "human"
    del bad["messages"][0]["role"]
    report = run(tmp_path, [bad])
    got = [(p.example, p.message_index, p.code) for p in report.errors]
    assert got == [(1, 1, "missing_role"), (1, 2, "unrecognized_role")]
    assert report.errors[0].message == "Example 1, message 1: 'role' is missing."
    assert report.errors[1].message.startswith(
        'Example 1, message 2: unrecognized role "human"; expected one of'
    )


def test_weight_on_the_example_is_an_extra_key_with_the_contract_message(tmp_path: Path) -> None:
    report = run(tmp_path, [chat(weight=1), *good(10)])
    assert only(report) == (1, None, "extra_key", 'Example 1 contains an extra "weight".')
    assert job_failure(report) == (
        "invalid_file_format",
        "The job failed due to a file format error in the training file. "
        'Invalid file format. Example 1 contains an extra "weight".',
    )


def test_unknown_keys_on_messages_are_reported_per_role(tmp_path: Path) -> None:
    bad = chat()
    bad["messages"][2]["foo"] = 1
    bad["messages"][1]["weight"] = 1  # weight belongs on assistant messages only
    report = run(tmp_path, [bad])
    assert [(p.message_index, p.code, p.message) for p in report.errors] == [
        (2, "extra_key", 'Example 1, message 2 contains an extra "weight".'),
        (3, "extra_key", 'Example 1, message 3 contains an extra "foo".'),
    ]


@pytest.mark.parametrize(
    ("message", "index"),
    [
        ({"role": "user"}, 2),
        ({"role": "user", "content": None}, 2),
        ({"role": "assistant", "content": None}, 3),
    ],
)
def test_missing_content(tmp_path: Path, message: dict, index: int) -> None:
    bad = chat()
    bad["messages"][index - 1] = message
    example, got_index, code, text = only(run(tmp_path, [bad]))
    assert (example, got_index, code) == (1, index, "missing_content")
    assert text.startswith(f"Example 1, message {index}: 'content' is missing")


@pytest.mark.parametrize("part", ["image_url", "input_audio", "file"])
def test_non_text_content_parts_are_refused(tmp_path: Path, part: str) -> None:
    bad = chat()
    bad["messages"][1]["content"] = [{"type": "text", "text": "look"}, {"type": part, part: {}}]
    assert only(run(tmp_path, [chat(), bad])) == (
        2,
        2,
        "unsupported_content_part",
        f"Example 2, message 2: content part type '{part}' is not supported; Afinar fine-tunes on text only.",
    )


@pytest.mark.parametrize("content", [42, [], [{"type": "text"}], ["plain"]])
def test_content_of_the_wrong_shape(tmp_path: Path, content: Any) -> None:
    bad = chat()
    bad["messages"][1]["content"] = content
    assert only(run(tmp_path, [bad]))[:3] == (1, 2, "invalid_content")


def test_no_assistant_message(tmp_path: Path) -> None:
    bad = chat()
    bad["messages"].pop()
    assert only(run(tmp_path, [chat(), chat("x"), bad])) == (
        3,
        None,
        "missing_assistant_message",
        "Example 3 has no assistant message.",
    )


@pytest.mark.parametrize("weight", [2, 0.5, -1, True, "1", None])
def test_weight_outside_zero_one(tmp_path: Path, weight: Any) -> None:
    bad = chat()
    bad["messages"][2]["weight"] = weight
    example, index, code, message = only(run(tmp_path, [bad]))
    assert (example, index, code) == (1, 3, "invalid_weight")
    assert message == f"Example 1, message 3: 'weight' must be 0 or 1, got {json.dumps(weight)}."


def test_tool_message_without_tool_call_id(tmp_path: Path) -> None:
    bad = chat()
    bad["messages"].insert(2, {"role": "tool", "content": "42"})
    assert only(run(tmp_path, [bad])) == (
        1,
        3,
        "missing_tool_call_id",
        "Example 1, message 3: a tool message needs a 'tool_call_id'.",
    )


def test_function_message_without_name(tmp_path: Path) -> None:
    bad = chat()
    bad["messages"].insert(2, {"role": "function", "content": "42"})
    assert only(run(tmp_path, [bad]))[:3] == (1, 3, "missing_name")


def _with_call(arguments: Any) -> dict:
    bad = chat()
    bad["messages"][2] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}],
    }
    return bad


def test_tool_call_arguments_must_be_a_json_string(tmp_path: Path) -> None:
    assert only(run(tmp_path, [_with_call({"a": 1})])) == (
        1,
        3,
        "invalid_tool_arguments",
        "Example 1, message 3: tool call 1: function.arguments must be a JSON string.",
    )


def test_tool_call_arguments_must_parse(tmp_path: Path) -> None:
    example, index, code, message = only(run(tmp_path, [_with_call("{not json")]))
    assert (example, index, code) == (1, 3, "invalid_tool_arguments")
    assert message.startswith("Example 1, message 3: tool call 1: function.arguments is not valid JSON")


def test_legacy_function_call_arguments_are_checked_too(tmp_path: Path) -> None:
    bad = chat()
    bad["messages"][2] = {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "f", "arguments": 3},
    }
    assert only(run(tmp_path, [bad]))[1:3] == (3, "invalid_tool_arguments")


def test_malformed_tool_definitions(tmp_path: Path) -> None:
    report = run(tmp_path, [chat(tools="nope"), chat(parallel_tool_calls="yes"), chat(functions=[])])
    assert [(p.example, p.code) for p in report.errors] == [
        (1, "invalid_tools"),
        (2, "invalid_tools"),
        (3, "invalid_tools"),
    ]


def test_reserved_special_tokens_in_content(tmp_path: Path, tokenizer: Any) -> None:
    lines = [chat(answer="done <|im_end|> more"), chat(user=[{"type": "text", "text": "<|endoftext|>"}])]
    report = run(tmp_path, lines, tokenizer=tokenizer)
    assert [(p.example, p.message_index, p.code, p.message) for p in report.errors] == [
        (1, 3, "invalid_token", "Example 1, message 3 contains an invalid token: <|im_end|>."),
        (2, 2, "invalid_token", "Example 2, message 2 contains an invalid token: <|endoftext|>."),
    ]
    code, message = job_failure(report) or ("", "")
    assert code == "invalid_file_format"
    assert "Invalid file format. Example 1, message 3 contains an invalid token: <|im_end|>." in message
    # Without a tokenizer there is nothing to know the reserved strings from.
    assert run(tmp_path, lines).ok


def test_a_template_that_cannot_render_is_an_error_not_a_crash(tmp_path: Path) -> None:
    class Broken:
        chat_template = None
        eos_token = "</s>"
        all_special_tokens = ()

        def apply_chat_template(self, *args: Any, **kwargs: Any) -> str:
            raise ValueError("roles must alternate")

    assert only(run(tmp_path, [chat()], tokenizer=Broken())) == (
        1,
        None,
        "render_error",
        "Example 1 cannot be rendered with the base model's chat template: roles must alternate.",
    )


def test_several_problems_in_one_file_all_reported_in_order(tmp_path: Path) -> None:
    bad_role = chat()
    bad_role["messages"][1]["role"] = "bot"
    report = run(tmp_path, [chat(), "nope", bad_role, chat(extra=1), [1]])
    assert [(p.example, p.code) for p in report.errors] == [
        (2, "invalid_json"),
        (3, "unrecognized_role"),
        (4, "extra_key"),
        (5, "not_an_object"),
    ]


def test_the_problem_cap_keeps_counting(tmp_path: Path) -> None:
    report = run(tmp_path, ["{bad"] * 250, max_problems=100)
    assert len(report.errors) == 100 and report.n_errors_total == 250
    assert report.error_counts == {"invalid_json": 250}
    assert [p.example for p in report.errors] == list(range(1, 101))
    nowarn = run(tmp_path, [{"messages": [{"role": "assistant", "content": "x"}]}] * 5, max_problems=2)
    assert len(nowarn.warnings) == 2 and nowarn.n_warnings_total == 5 + 5 + 4  # system, user, duplicates


# ---------------------------------------------------------------- warnings


def test_warnings_missing_system_missing_user_duplicates(tmp_path: Path) -> None:
    no_system = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    no_user = {"messages": [{"role": "system", "content": "a"}, {"role": "assistant", "content": "b"}]}
    dup = json.dumps(chat(), indent=None, separators=(", ", ": "), sort_keys=True)  # same JSON, other text
    report = run(tmp_path, [chat(), no_system, no_user, dup])
    assert report.ok
    assert [(p.example, p.code, p.message) for p in report.warnings] == [
        (2, "missing_system_message", "Example 2 has no system message."),
        (3, "missing_user_message", "Example 3 has no user message."),
        (4, "duplicate_example", "Example 4 is a duplicate of example 1."),
    ]
    assert report.warning_counts == {
        "missing_system_message": 1,
        "missing_user_message": 1,
        "duplicate_example": 1,
    }


def test_all_assistant_messages_weighted_zero_warns(tmp_path: Path) -> None:
    silent = chat()
    silent["messages"][2]["weight"] = 0
    report = run(tmp_path, [silent])
    assert report.ok and [p.code for p in report.warnings] == ["no_trained_messages"]


def test_examples_longer_than_the_context_are_truncated_with_a_warning(
    tmp_path: Path, tokenizer: Any
) -> None:
    long_answer = "Hard wheels around 99A are best for street. " * 20
    lines = [chat(), chat(answer=long_answer)]
    full = encode_chat(tokenizer, chat(answer=long_answer), 10**9).n_tokens
    short = encode_chat(tokenizer, chat(), 10**9).n_tokens
    context = short + 5
    report = run(tmp_path, lines, tokenizer=tokenizer, context_length=context)
    assert report.ok
    assert [(p.example, p.code, p.message) for p in report.warnings] == [
        (
            2,
            "truncated",
            f"Example 2 has {full} tokens, more than the context length of {context}; "
            f"the last {full - context} tokens will be cut.",
        )
    ]
    assert report.n_truncated == 1 and report.truncated_tokens == full - context
    assert report.total_tokens == short + full
    assert report.billable_tokens_per_epoch == short + context


# ---------------------------------------------------------------- tokens and statistics


def test_token_counts_use_the_base_models_template(tmp_path: Path, tokenizer: Any) -> None:
    lines = [chat(user="q" * k, answer="a" * (k + 1)) for k in range(1, 21)]
    report = run(tmp_path, lines, tokenizer=tokenizer)
    encoded = [encode_chat(tokenizer, line, 10**9) for line in lines]
    assert report.n_tokenized == 20
    assert report.total_tokens == sum(e.n_tokens for e in encoded) == report.billable_tokens_per_epoch
    assert report.trained_tokens == sum(e.n_trained for e in encoded) > 0
    stats = report.tokens_per_example
    assert stats is not None
    assert (stats.min, stats.max) == (min(e.n_tokens for e in encoded), max(e.n_tokens for e in encoded))
    assert stats.min <= stats.p10 <= stats.mean <= stats.p90 <= stats.max
    assert sum(b.count for b in report.token_histogram) == 20
    assert report.token_histogram[0].low == 0 and report.token_histogram[-1].high is None
    assert report.n_truncated == 0 and report.truncated_tokens == 0
    json.dumps(report.to_dict())


def test_examples_with_errors_are_not_counted(tmp_path: Path, tokenizer: Any) -> None:
    report = run(tmp_path, [chat(), "{bad", chat(weight=0)], tokenizer=tokenizer)
    assert report.n_examples == 3 and report.n_tokenized == 1


# ---------------------------------------------------------------- preference (DPO)


def test_clean_preference_file_and_completion_aliases(tmp_path: Path, tokenizer: Any) -> None:
    lines = [pref(i) for i in range(6)] + [pref(i, suffix="_completion") for i in range(6, 12)]
    report = run(tmp_path, lines, method="dpo", tokenizer=tokenizer)
    assert report.ok and report.format == "preference" and report.n_examples == 12
    assert job_failure(report) is None
    pairs = [preference_conversations(line) for line in lines]
    per_line = [sum(encode_chat(tokenizer, c, 10**9).n_tokens for c in pair) for pair in pairs]
    assert report.tokens_per_example is not None
    assert (report.tokens_per_example.min, report.tokens_per_example.max) == (min(per_line), max(per_line))
    assert report.billable_tokens_per_epoch == sum(per_line)
    assert report.messages_per_example is not None and report.messages_per_example.max == 3


def test_preference_tokens_count_prompt_plus_each_answer_and_train_only_the_answers(
    tmp_path: Path, tokenizer: Any
) -> None:
    line = pref(1)
    line["input"]["messages"] += [
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": "again"},
    ]
    report = run(tmp_path, [line], method="dpo", tokenizer=tokenizer)
    prompt = line["input"]["messages"]
    answers = (line["preferred_output"][0], line["non_preferred_output"][0])
    full = [encode_chat(tokenizer, {"messages": [*prompt, a]}, 10**9) for a in answers]
    answer_only = [
        encode_chat(tokenizer, {"messages": [{"role": "user", "content": "x"}, a]}, 10**9) for a in answers
    ]
    assert report.total_tokens == sum(e.n_tokens for e in full) == report.billable_tokens_per_epoch
    # the earlier assistant turn of the prompt is context, not trained on
    assert report.trained_tokens == sum(e.n_trained for e in answer_only) < sum(e.n_trained for e in full)


def test_preference_structural_errors(tmp_path: Path) -> None:
    two = pref(1)
    two["preferred_output"].append({"role": "assistant", "content": "x"})
    user_out = pref(2)
    user_out["non_preferred_output"] = [{"role": "user", "content": "x"}]
    no_input = pref(3)
    del no_input["input"]
    both = pref(4)
    both["preferred_completion"] = both["preferred_output"]
    image = pref(5)
    image["input"]["messages"][1]["content"] = [{"type": "image_url", "image_url": {"url": "u"}}]
    extra = pref(6)
    extra["input"]["seed"] = 1
    report = run(tmp_path, [pref(0), two, user_out, no_input, both, image, extra], method="dpo")
    got = [(p.example, p.message_index, p.code, p.message) for p in report.errors]
    one = "must hold exactly one assistant message."
    image_text = "content part type 'image_url' is not supported; Afinar fine-tunes on text only."
    assert got == [
        (2, None, "invalid_preference_output", f"Example 2: 'preferred_output' {one}"),
        (
            3,
            None,
            "invalid_preference_output",
            "Example 3, non_preferred_output: the message must have role 'assistant', not 'user'.",
        ),
        (4, None, "missing_key", "Example 4 is missing key 'input'."),
        (
            5,
            None,
            "invalid_preference_output",
            "Example 5: give 'preferred_output' or 'preferred_completion', not both.",
        ),
        (6, 2, "unsupported_content_part", f"Example 6, message 2: {image_text}"),
        (7, None, "extra_key", 'Example 7, input contains an extra "seed".'),
    ]


def test_chat_file_under_dpo_fails_with_the_contract_mismatch_message(tmp_path: Path) -> None:
    report = run(tmp_path, good(12), method="dpo")
    assert report.format == "chat"
    assert [(p.example, p.code) for p in report.errors] == [(FILE_LEVEL, "format_mismatch")]
    assert job_failure(report, file_id="file-abc") == (
        "invalid_training_file",
        "The job failed due to an invalid training file. Input file file-abc is in the fine-tune-chat "
        "format, but the specified fine-tuning job is not using 'supervised' as the training method "
        "(provided method=dpo).",
    )


def test_preference_file_under_supervised_fails_with_the_converse_message(tmp_path: Path) -> None:
    report = run(tmp_path, [pref(i) for i in range(12)], method="supervised")
    assert report.format == "preference"
    assert job_failure(report, file_id="file-abc") == (
        "invalid_training_file",
        "The job failed due to an invalid training file. Input file file-abc is in the fine-tune-preference "
        "format, but the specified fine-tuning job is not using 'dpo' as the training method "
        "(provided method=supervised).",
    )


def test_the_mismatch_problem_survives_a_full_cap(tmp_path: Path) -> None:
    report = run(tmp_path, [*good(3), *["{bad"] * 5], method="dpo", max_problems=2)
    assert report.errors[0].code == "format_mismatch" and report.n_errors_total == 6
    assert (job_failure(report) or ("", ""))[1].endswith("(provided method=dpo).")


def test_prompt_completion_file_is_an_unexpected_format(tmp_path: Path) -> None:
    report = run(tmp_path, [{"prompt": "a", "completion": "b"}] * 12)
    assert report.format == "unknown"
    code, message = job_failure(report) or ("", "")
    assert code == "invalid_training_file"
    assert message.startswith(
        "The job failed due to an invalid training file. Unexpected file format, expected"
    )


# ---------------------------------------------------------------- job_failure


def test_too_few_training_examples(tmp_path: Path) -> None:
    report = run(tmp_path, good(7))
    assert report.ok
    assert job_failure(report) == (
        "invalid_n_examples",
        "Training file has 7 example(s), but must have at least 10 examples",
    )
    assert job_failure(report, param="validation_file") is None


def test_empty_validation_file(tmp_path: Path) -> None:
    report = run(tmp_path, [""])
    assert report.n_examples == 0
    assert job_failure(report, param="validation_file") == (
        "invalid_n_examples",
        "Validation file has 0 example(s), but must have at least 1 example",
    )


def test_structural_error_message_summarises_the_other_problems(tmp_path: Path) -> None:
    no_assistant = chat()
    no_assistant["messages"].pop()
    bad_role = chat()
    bad_role["messages"][1]["role"] = "human"
    lines: list[Any] = good(12)
    lines[1] = bad_role
    lines[3] = "{"
    lines[8] = no_assistant
    lines[11] = [1]
    report = run(tmp_path, lines)
    assert job_failure(report) == (
        "invalid_training_file",
        "The job failed due to an invalid training file. Invalid file format. Example 2, message 2: "
        'unrecognized role "human"; expected one of system, developer, user, assistant, tool, function. '
        "(and 3 more problems: examples 4, 9, 12)",
    )
    code, message = job_failure(report, param="validation_file") or ("", "")
    assert code == "invalid_validation_file"
    assert message.startswith(
        "The job failed due to an invalid validation file. Invalid file format. Example 2"
    )


def test_summary_marks_problems_beyond_the_cap(tmp_path: Path) -> None:
    report = run(tmp_path, ["{"] * 30, max_problems=5)
    message = (job_failure(report) or ("", ""))[1]
    assert message.endswith("(and 29 more problems: examples 2, 3, 4, 5, …)")


def test_job_failure_rejects_an_unknown_param(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        job_failure(run(tmp_path, good(10)), param="file")


# ---------------------------------------------------------------- streaming


def test_validate_lines_consumes_its_input_lazily() -> None:
    produced = 0

    def lines() -> Iterator[bytes]:
        nonlocal produced
        for i in range(1000):
            produced += 1
            yield json.dumps(chat(user=f"q{i}")).encode() + b"\n"

    report = validate_lines(lines())
    assert report.ok and report.n_examples == produced == 1000


def test_memory_stays_flat_on_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    answer = "x" * 10_000
    with open(path, "wb") as f:
        for i in range(2_000):  # ~20 MB
            f.write(json.dumps(chat(user=f"q{i}", answer=answer)).encode() + b"\n")
    assert path.stat().st_size > 20_000_000
    tracemalloc.start()
    try:
        report = validate_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok and report.n_examples == 2_000
    assert peak < 3_000_000, f"peak {peak} bytes for a {path.stat().st_size}-byte file"
