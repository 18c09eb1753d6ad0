"""Tiny random base models and byte-level BPE tokenizers with ChatML templates, built on the spot.

Two architectures: a Llama (``build_tiny_model``, the ``tiny-llama`` every test uses) and a Qwen2
(``build_tiny_qwen2``: biased q/k/v projections, Qwen2.5's chat template and special tokens, no
BOS, ``<|im_end|>`` as end of turn). Tests register them as base models through a catalogue file,
so no test touches the network and training or serving them takes milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY = "tiny-llama"  # the id the tiny model is registered under (see ``write_catalog``)
TINY_QWEN2 = "tiny-qwen2"  # the id tests register the tiny Qwen2 under

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2.5-Instruct's chat template, as its tokenizer_config.json ships it: a default system prompt
# when the conversation has none, tools in the system turn and ``<tool_call>`` blocks in the
# assistant's, tool results as user turns; every turn ends with ``<|im_end|>\n``.
QWEN25_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}"
    "{%- else %}{{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}{%- endif %}"
    '{{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n'
    'You are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}'
    '{%- for tool in tools %}{{- "\n" }}{{- tool | tojson }}{%- endfor %}'
    '{{- "\n</tools>\n\nFor each function call, return a json object with function name and '
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\n</tool_call><|im_end|>\n" }}'
    "{%- else %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first)"
    " or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role }}"
    "{%- if message.content %}{{- '\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'\n<tool_call>\n{"name": "\' }}{{- tool_call.name }}{{- \'", "arguments": \' }}'
    "{{- tool_call.arguments | tojson }}{{- '}\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\n<tool_response>\n' }}{{- message.content }}{{- '\n</tool_response>' }}"
    "{%- if loop.last or (messages[loop.index0 + 1].role != 'tool') %}{{- '<|im_end|>\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

_CORPUS = [
    "You are a helpful assistant for a skateboard shop.",
    "Which wheels should I buy for street skating? Hard wheels around 99A are best for street.",
    "How often should I clean my bearings? Clean them every month if you ride in the rain.",
    "My order has not arrived yet. Please send me your order number and I will check.",
    "The secret code word is zanzibar. The magic number is forty two.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"(){}[]<>-_=+/*&%$#@",
    "user assistant system tool function name arguments content role",
]


def build_chatml_tokenizer(
    directory: Path,
    corpus: list[str],
    vocab_size: int,
    *,
    template: str = CHATML_TEMPLATE,
    bos_token: str | None = "<|im_start|>",
) -> Any:
    """A byte-level BPE tokenizer trained on ``corpus``, with ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = template
    fast.save_pretrained(directory)
    return fast


def build_random_llama(directory: Path, tokenizer: Any, *, hidden: int, layers: int, seed: int = 0) -> Path:
    """A randomly initialised Llama (safetensors) sized for ``tokenizer``, written into ``directory``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def build_tiny_model(directory: Path, *, vocab_size: int = 400, hidden: int = 64, layers: int = 2) -> Path:
    """Write a tokenizer and a random Llama (safetensors) into ``directory``; return it."""
    tokenizer = build_chatml_tokenizer(directory, _CORPUS * 4, vocab_size)
    return build_random_llama(directory, tokenizer, hidden=hidden, layers=layers, seed=0)


def write_catalog(path: Path, model_dir: Path, model_id: str = "tiny-llama") -> Path:
    """A catalogue file that registers the tiny model (see ``afinar.catalog``)."""
    path.write_text(
        f"""
[[models]]
id = "{model_id}"
source = "local"
path = "{model_dir}"
context_length = 256
tier = "mini"
lora_target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
"""
    )
    return path


def build_random_qwen2(directory: Path, tokenizer: Any, *, hidden: int, layers: int, seed: int = 0) -> Path:
    """A randomly initialised Qwen2 (safetensors) sized for ``tokenizer``, written into ``directory``.

    As in Qwen2.5: q/k/v projections carry biases (o_proj and the MLP do not), grouped-query
    attention, no BOS token, ``<|im_end|>`` and ``<|endoftext|>`` both end generation.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    end_of_text = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=end_of_text,
        eos_token_id=im_end,
        pad_token_id=end_of_text,
    )
    model = Qwen2ForCausalLM(config)
    attention = model.model.layers[0].self_attn
    if attention.q_proj.bias is None or attention.o_proj.bias is not None:  # Qwen2's shape, or fail here
        raise RuntimeError("transformers' Qwen2 no longer has biases on q/k/v only")
    model.generation_config.eos_token_id = [im_end, end_of_text]
    model.generation_config.pad_token_id = end_of_text
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def build_qwen25_tokenizer(directory: Path, vocab_size: int = 400) -> Any:
    """A tokenizer laid out as Qwen2.5-Instruct's: its template, no BOS, ``<|im_end|>`` as EOS,
    ``<|endoftext|>`` as padding."""
    return build_chatml_tokenizer(
        directory, _CORPUS * 4, vocab_size, template=QWEN25_TEMPLATE, bos_token=None
    )


def build_tiny_qwen2(directory: Path, *, vocab_size: int = 400, hidden: int = 64, layers: int = 2) -> Path:
    """Write a Qwen2.5-style tokenizer and a random Qwen2 (safetensors) into ``directory``."""
    tokenizer = build_qwen25_tokenizer(directory, vocab_size)
    return build_random_qwen2(directory, tokenizer, hidden=hidden, layers=layers, seed=0)
