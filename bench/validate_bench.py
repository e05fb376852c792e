"""How long `ftjob validate` takes on hostile documents, against the quickstart measured in
the same run: a 1 MiB string, a 3 MiB document, an alias bomb, deep nesting, a key of
100 KiB. Each is the median of several runs of the command in this process (`cli.main`).

    python -m bench.validate_bench [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

from ftjob import cli
from tests.support.hostile import BROKEN_DOCUMENTS

REPO = Path(__file__).resolve().parents[1]
HEAD = "apiVersion: ftjob.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: big}\n"


def documents() -> dict[str, bytes]:
    spec = "spec:\n  model: {name: m}\n  dataset: {name: d}\n"
    return {
        "quickstart (baseline)": (REPO / "examples/quickstart.yaml").read_bytes(),
        "1 MiB model name": (HEAD + "spec:\n  model: {name: '" + "x" * 2**20 +
                             "'}\n  dataset: {name: d}\n").encode(),
        "1 MiB in 1000 labels": (HEAD + spec + "  podTemplate:\n    labels:\n" + "".join(
            f"      k{i}: '{'v' * 1000}'\n" for i in range(1000))).encode(),
        "3 MiB document (the limit)": (HEAD + spec + "  training: {seed: 1}\n# " +
                                       "x" * (3 * 2**20 - 200) + "\n").encode(),
        "100 KiB key in training": (HEAD + spec + "  training:\n    " + "y" * 100_000 +
                                    ": 1\n").encode(),
        "alias bomb (10^9 values)": BROKEN_DOCUMENTS[0].encode(),
        "nesting 500 deep": BROKEN_DOCUMENTS[3].encode(),
    }


def seconds(path: Path, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cli.main(["validate", str(path)])
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = {}
        for name, data in documents().items():
            path = Path(folder) / "job.yaml"
            path.write_bytes(data)
            results[name] = seconds(path, args.repeat)
    baseline = results["quickstart (baseline)"]
    print(f"{'document':32} {'seconds':>9} {'x quickstart':>13}")
    for name, value in results.items():
        print(f"{name:32} {value:9.4f} {value / baseline:13.1f}")


if __name__ == "__main__":
    main()
