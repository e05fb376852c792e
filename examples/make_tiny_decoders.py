"""Builds tiny random-weight decoder LLMs of real architectures (Llama, Qwen2), with a real
byte-level BPE tokenizer and a ChatML chat template, the way Hugging Face's own tests use
tiny random models. No pretrained decoder can be downloaded on an offline machine; these let
the decoder tasks (causal-lm, sft, dpo) run for real in seconds on a CPU.

Deterministic: the tokenizer is trained on the committed paraphrase sentences and the
weights come from a fixed seed, so the same versions of tokenizers, transformers and torch
give the same folders.

    python examples/make_tiny_decoders.py [OUT_DIR]     # default: examples/models
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VOCAB_SIZE = 1024
CONTEXT = 256
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML, as Qwen writes it. The generation markers tell the tokenizer which tokens the
# assistant produced (return_assistant_tokens_mask), which is what SFT trains on.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
ARCHITECTURES = ("llama", "qwen2")


def training_texts() -> list[str]:
    texts = []
    for name in ("paraphrase-train.csv", "paraphrase-validation.csv"):
        with open(HERE / "data" / name, newline="") as handle:
            for row in csv.DictReader(handle):
                texts += [row["sentence1"], row["sentence2"]]
    return texts


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    core.train_from_iterator(training_texts(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:], model_max_length=CONTEXT)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(architecture: str, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    shape = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=CONTEXT, tie_word_embeddings=True,
                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                 bos_token_id=None)
    config = {"llama": LlamaConfig, "qwen2": Qwen2Config}[architecture](**shape)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def make(out_dir: Path) -> dict[str, Path]:
    """Writes out_dir/tiny-<architecture> for each architecture; returns the folders."""
    tokenizer = build_tokenizer()
    folders = {}
    for architecture in ARCHITECTURES:
        folder = out_dir / f"tiny-{architecture}"
        build_model(architecture, tokenizer).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[architecture] = folder
    return folders


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "models"
    for architecture, folder in make(target).items():
        print(f"{architecture}: {folder}")
