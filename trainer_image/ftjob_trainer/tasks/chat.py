"""What the TRL tasks (sft, dpo) share: role/content turns, the chat template that renders
them, and the column names TRL reads."""

from __future__ import annotations

from datasets import DatasetDict

from ..errors import DataError

ROLES = {"system", "user", "assistant", "tool"}


def turns_problem(turns) -> str | None:
    """Why a value is not a list of role/content turns, or None."""
    if not isinstance(turns, list) or not turns:
        return "is not a list of turns"
    for turn in turns:
        if not isinstance(turn, dict) or not {"role", "content"} <= turn.keys():
            return "has a turn without role and content"
        if turn["role"] not in ROLES:
            return f"has a turn with role {turn['role']!r} (one of {', '.join(sorted(ROLES))})"
    return None


def use_chat_template(tokenizer, chat_template: str | None, model_name: str,
                      section: str) -> None:
    """Conversations need a chat template: the job's, else the tokenizer's own."""
    if chat_template:
        tokenizer.chat_template = chat_template
    if not tokenizer.chat_template:
        raise DataError(
            f"the tokenizer of {model_name} has no chat template to render conversations "
            f"with; give one in spec.{section}.chatTemplate (Jinja, as in a "
            "tokenizer_config.json), or use a chat model's tokenizer")


def to_trl_columns(raw: DatasetDict, columns: list[str], names: list[str]) -> DatasetDict:
    """The job's columns under the names TRL reads, and nothing else."""
    raw = raw.select_columns(columns)
    return raw.rename_columns({old: new for old, new in zip(columns, names) if old != new})
