"""Generates the small datasets of the language-model and tagging examples, from the
vocabulary of the paraphrase set:

- news-text.jsonl: {"text": a paragraph of news-style sentences}, for masked-lm and
  causal-lm;
- entities-train.jsonl, entities-validation.jsonl: {"tokens": words, "tags": IOB2 tags}
  with organisations (ORG) and dates (DATE), for token-classification;
- chat-train.jsonl, chat-validation.jsonl: {"messages": a system, user and assistant turn}
  where the assistant rewrites the user's sentence in other words, for sft;
- preferences-train.jsonl, preferences-validation.jsonl: {"prompt": a system and a user
  turn, "chosen": the assistant's rewrite, "rejected": an unrelated sentence}, for dpo.

Deterministic: the same seed gives byte-identical files, which are committed next to this
script.

    python examples/data/make_task_data.py [--check]
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_paraphrase_data import (  # noqa: E402
    ACTIONS, OBJECTS, SUBJECTS, TIMES, make_pair, write_or_check)

ORGANISATIONS = sorted({*SUBJECTS, *(s for names in SUBJECTS.values() for s in names)})
VERBS = sorted({*ACTIONS, *(v for synonyms, _ in ACTIONS.values() for v in synonyms)})


def plain_sentence(rng: random.Random) -> str:
    subject = rng.choice(ORGANISATIONS)
    return (f"{subject[0].upper()}{subject[1:]} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
            f"{rng.choice(TIMES)}.")


def paragraph(rng: random.Random) -> str:
    return " ".join(plain_sentence(rng) for _ in range(rng.randint(2, 5)))


def span(words: list[str], kind: str, skip_article: bool) -> list[str]:
    """IOB2 tags for one name; a leading article or preposition stays outside (O)."""
    tags, started = [], False
    for word in words:
        if not started and skip_article and word.lower() in ("the", "on", "in"):
            tags.append("O")
            continue
        tags.append(("I-" if started else "B-") + kind)
        started = True
    return tags


def tagged_sentence(rng: random.Random) -> dict:
    subject = rng.choice(ORGANISATIONS).split()
    verb, obj = rng.choice(VERBS).split(), rng.choice(OBJECTS).split()
    when = rng.choice(TIMES).split()
    tokens = [subject[0].capitalize(), *subject[1:], *verb, *obj, *when, "."]
    tags = [*span(subject, "ORG", True), *["O"] * (len(verb) + len(obj)),
            *span(when, "DATE", True), "O"]
    return {"tokens": tokens, "tags": tags}


REWRITE_INSTRUCTION = {"role": "system",
                       "content": "You rewrite news sentences in other words."}


def rewrite(rng: random.Random) -> tuple[str, str]:
    while True:
        sentence, rewritten, same_meaning = make_pair(rng)
        if same_meaning:
            return sentence, rewritten


def rewrite_conversation(rng: random.Random) -> dict:
    sentence, rewritten = rewrite(rng)
    return {"messages": [REWRITE_INSTRUCTION, {"role": "user", "content": sentence},
                         {"role": "assistant", "content": rewritten}]}


def rewrite_preference(rng: random.Random) -> dict:
    sentence, rewritten = rewrite(rng)
    return {"prompt": [REWRITE_INSTRUCTION, {"role": "user", "content": sentence}],
            "chosen": [{"role": "assistant", "content": rewritten}],
            "rejected": [{"role": "assistant", "content": plain_sentence(rng)}]}


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)


def files() -> dict[str, str]:
    text_rng, tag_rng, eval_rng = random.Random(11), random.Random(12), random.Random(13)
    chat_rng, chat_eval_rng = random.Random(14), random.Random(15)
    preference_rng, preference_eval_rng = random.Random(16), random.Random(17)
    return {
        "news-text.jsonl": jsonl([{"text": paragraph(text_rng)} for _ in range(800)]),
        "entities-train.jsonl": jsonl([tagged_sentence(tag_rng) for _ in range(1000)]),
        "entities-validation.jsonl": jsonl([tagged_sentence(eval_rng) for _ in range(200)]),
        "chat-train.jsonl": jsonl([rewrite_conversation(chat_rng) for _ in range(600)]),
        "chat-validation.jsonl": jsonl([rewrite_conversation(chat_eval_rng)
                                        for _ in range(100)]),
        "preferences-train.jsonl": jsonl([rewrite_preference(preference_rng)
                                          for _ in range(400)]),
        "preferences-validation.jsonl": jsonl([rewrite_preference(preference_eval_rng)
                                               for _ in range(64)]),
    }


def main() -> int:
    return write_or_check(files(), Path(__file__).name, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
