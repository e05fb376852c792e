"""Loading tokenizers and models (hub id, local folder or storage URI), with LoRA."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from .arguments import ModelArguments
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


def load_model_config(path: str, model_args: ModelArguments):
    """The model's config.json alone (no weights), for checks before the weights load."""
    try:
        return AutoConfig.from_pretrained(path, revision=model_args.revision,
                                          trust_remote_code=model_args.trust_remote_code)
    except (OSError, ValueError) as error:
        raise model_not_found(model_args.model_name_or_path, error) from None


def load_pretrained(auto_class, path: str, model_args: ModelArguments,
                    lora_task_type: str | None, use_lora: bool | None = None, **kwargs):
    """`auto_class.from_pretrained`, with LoRA applied when the job asks for it (or when
    `use_lora` says so)."""
    try:
        model = auto_class.from_pretrained(
            path, revision=model_args.revision,
            trust_remote_code=model_args.trust_remote_code, **kwargs)
    except (OSError, ValueError) as error:
        raise model_not_found(model_args.model_name_or_path, error) from None
    if model_args.use_lora if use_lora is None else use_lora:
        model = apply_lora(model, model_args, lora_task_type)
    return model


def lora_config(model_args: ModelArguments, task_type: str | None):
    from peft import LoraConfig

    return LoraConfig(task_type=task_type, r=model_args.lora_r,
                      lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                      target_modules=model_args.lora_target_modules)


def apply_lora(model, model_args: ModelArguments, task_type: str | None):
    from peft import get_peft_model

    model = get_peft_model(model, lora_config(model_args, task_type))
    trainable, total = model.get_nb_trainable_parameters()
    logger.info("LoRA trains %d of %d parameters (%.2f%%)", trainable, total,
                100 * trainable / total)
    return model
