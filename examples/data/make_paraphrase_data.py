"""Generates the quickstart's sentence-pair paraphrase data (an MRPC-like task).

Deterministic: the same seed gives byte-identical CSVs, which are committed next to this
script (paraphrase-train.csv, paraphrase-validation.csv). Each pair is a news-style sentence
and a rewrite of it: label 1 when the rewrite keeps the meaning (synonyms, reordering), 0
when it changes one fact (who, what, to what, or when) while staying close in wording, so
the model has to read both sentences rather than match topics.

    python examples/data/make_paraphrase_data.py [--check]
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from pathlib import Path

SUBJECTS = {
    "the company": ["the firm", "the business"],
    "the city council": ["the council", "city officials"],
    "the school board": ["the board", "school officials"],
    "the hospital": ["the medical center", "the clinic"],
    "the union": ["union leaders", "the workers' union"],
    "the museum": ["the gallery", "museum staff"],
    "the airline": ["the carrier", "the airline company"],
    "the university": ["the college", "university officials"],
    "the governor": ["the state governor", "the governor's office"],
    "the bank": ["the lender", "the financial group"],
}
# Each action with its synonyms and an action that means something else.
ACTIONS = {
    "approved": (["signed off on", "authorized", "gave the green light to"], "rejected"),
    "rejected": (["turned down", "declined", "voted against"], "approved"),
    "announced": (["unveiled", "made public", "revealed"], "withdrew"),
    "withdrew": (["pulled", "took back", "retracted"], "announced"),
    "postponed": (["delayed", "put off", "pushed back"], "cancelled"),
    "cancelled": (["called off", "scrapped", "dropped"], "postponed"),
    "praised": (["commended", "applauded", "spoke highly of"], "criticized"),
    "criticized": (["condemned", "faulted", "spoke out against"], "praised"),
    "expanded": (["enlarged", "broadened", "grew"], "reduced"),
    "reduced": (["cut", "scaled back", "trimmed"], "expanded"),
}
OBJECTS = ["the new budget", "the building plan", "the summer program", "the merger",
           "the safety rules", "the hiring plan", "the research grant", "the price increase",
           "the bus routes", "the evening classes", "the loan program", "the art exhibit"]
TIMES = ["on Monday", "on Tuesday", "on Friday", "last week", "in March", "in October",
         "this morning", "yesterday"]


def sentence(subject, action, obj, when, fronted: bool) -> str:
    if fronted:
        text = f"{when[0].upper()}{when[1:]}, {subject} {action} {obj}."
    else:
        text = f"{subject[0].upper()}{subject[1:]} {action} {obj} {when}."
    return text


def make_pair(rng: random.Random) -> tuple[str, str, int]:
    subject = rng.choice(list(SUBJECTS))
    action = rng.choice(list(ACTIONS))
    obj, when = rng.choice(OBJECTS), rng.choice(TIMES)
    first = sentence(subject, action, obj, when, fronted=False)
    # The rewrite always changes wording, so surface overlap does not give the label away.
    new_subject = rng.choice([subject, *SUBJECTS[subject]])
    new_action = rng.choice(ACTIONS[action][0])
    new_obj, new_when = obj, when
    label = rng.random() < 0.5
    if not label:
        change = rng.choice(["subject", "action", "object", "time"])
        if change == "subject":
            new_subject = rng.choice([s for s in SUBJECTS if s != subject])
        elif change == "action":
            opposite = ACTIONS[action][1]
            new_action = rng.choice([opposite, *ACTIONS[opposite][0]])
        elif change == "object":
            new_obj = rng.choice([o for o in OBJECTS if o != obj])
        else:
            new_when = rng.choice([t for t in TIMES if t != when])
    second = sentence(new_subject, new_action, new_obj, new_when, fronted=rng.random() < 0.5)
    return first, second, int(label)


def render(rows: int, seed: int) -> str:
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["idx", "sentence1", "sentence2", "label"])
    for idx in range(rows):
        writer.writerow([idx, *make_pair(rng)])
    return out.getvalue()


SPLITS = {"paraphrase-train.csv": (2000, 42), "paraphrase-validation.csv": (400, 7)}


def write_or_check(files: dict[str, str], generator: str, description: str) -> int:
    """Writes the generated files next to the generator, or with --check exits 1 when a
    committed one differs."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed files differ from a fresh generation")
    args = parser.parse_args()
    folder = Path(__file__).resolve().parent
    stale = []
    for name, text in files.items():
        path = folder / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run {generator}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    files = {name: render(rows, seed) for name, (rows, seed) in SPLITS.items()}
    return write_or_check(files, Path(__file__).name, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
