"""A tiny random Llama and a byte-level BPE tokenizer with a ChatML template, built on the spot.

Tests register it as a base model through a catalogue file, so no test touches the network and
training or serving it takes milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY = "tiny-llama"  # the id the tiny model is registered under (see ``write_catalog``)

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

_CORPUS = [
    "You are a helpful assistant for a skateboard shop.",
    "Which wheels should I buy for street skating? Hard wheels around 99A are best for street.",
    "How often should I clean my bearings? Clean them every month if you ride in the rain.",
    "My order has not arrived yet. Please send me your order number and I will check.",
    "The secret code word is zanzibar. The magic number is forty two.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"(){}[]<>-_=+/*&%$#@",
    "user assistant system tool function name arguments content role",
]


def build_chatml_tokenizer(directory: Path, corpus: list[str], vocab_size: int) -> Any:
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
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
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
