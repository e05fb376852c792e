"""Tokenizer and model loading (hub id, local folder or storage URI) and LoRA."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, \
    AutoTokenizer

from .arguments import ModelArguments
from .data import Labels
from .errors import NotFound
from .storage import Location, is_storage_uri

logger = logging.getLogger(__name__)


def resolve_model_path(model_args: ModelArguments, cache_dir: Path) -> str:
    """Storage URIs are downloaded to the local cache (once per node); hub ids and local
    folders go to from_pretrained as they are."""
    name = model_args.model_name_or_path
    if not is_storage_uri(name):
        return name
    target = cache_dir / "models" / hashlib.sha256(name.encode()).hexdigest()[:16]
    done = target / ".ftjob-downloaded"
    if not done.exists():
        try:
            Location(name).download_folder(target)
        except FileNotFoundError:
            raise NotFound(f"model {name} not found in storage") from None
        done.touch()
    return str(target)


def model_not_found(name: str, error: Exception) -> NotFound:
    return NotFound(f"cannot load model {name}: it is neither a local folder with a "
                    f"config.json nor a reachable hub id ({type(error).__name__}: {error})")


def load_tokenizer(path: str, model_args: ModelArguments):
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, revision=model_args.revision, trust_remote_code=model_args.trust_remote_code)
    except (OSError, ValueError) as error:
        raise model_not_found(model_args.model_name_or_path, error) from None
    if tokenizer.pad_token is None:
        # Decoder-only tokenizers often have no pad token; padding with EOS is the usual fix.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.sep_token
    return tokenizer


def load_model(path: str, model_args: ModelArguments, labels: Labels | None):
    common = {"revision": model_args.revision,
              "trust_remote_code": model_args.trust_remote_code}
    try:
        if model_args.task == "causal-lm":
            # Encoder checkpoints (BERT-style) become decoders with is_decoder; real causal
            # LMs ignore the flag.
            model = AutoModelForCausalLM.from_pretrained(path, is_decoder=True, **common)
        else:
            kwargs = {"num_labels": labels.num_labels}
            if labels.names:
                kwargs["id2label"] = dict(enumerate(labels.names))
                kwargs["label2id"] = {n: i for i, n in enumerate(labels.names)}
            model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs,
                                                                       **common)
    except (OSError, ValueError) as error:
        raise model_not_found(model_args.model_name_or_path, error) from None
    if model_args.use_lora:
        model = apply_lora(model, model_args)
    return model


def apply_lora(model, model_args: ModelArguments):
    from peft import LoraConfig, TaskType, get_peft_model

    task_type = TaskType.CAUSAL_LM if model_args.task == "causal-lm" else TaskType.SEQ_CLS
    config = LoraConfig(task_type=task_type, r=model_args.lora_r,
                        lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                        target_modules=model_args.lora_target_modules)
    model = get_peft_model(model, config)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("LoRA trains %d of %d parameters (%.2f%%)", trainable, total,
                100 * trainable / total)
    return model
