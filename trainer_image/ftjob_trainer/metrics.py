"""compute_metrics for the Trainer.

The common classification metrics are computed with scikit-learn, offline, because
`evaluate.load` fetches metric scripts from the hub at run time; any other name goes to
`evaluate` as usual.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as sk

OFFLINE = {
    "accuracy": lambda y, p, avg: sk.accuracy_score(y, p),
    "f1": lambda y, p, avg: sk.f1_score(y, p, average=avg, zero_division=0),
    "precision": lambda y, p, avg: sk.precision_score(y, p, average=avg, zero_division=0),
    "recall": lambda y, p, avg: sk.recall_score(y, p, average=avg, zero_division=0),
    "matthews_correlation": lambda y, p, avg: sk.matthews_corrcoef(y, p),
}
# Computed from the eval loss, not from predictions.
FROM_LOSS = {"perplexity"}


def build_compute_metrics(names: list[str], num_labels: int):
    """Returns compute_metrics for classification, or None when no metric needs logits."""
    names = [n for n in names if n not in FROM_LOSS]
    if not names:
        return None
    average = "binary" if num_labels == 2 else "macro"
    remote = {}
    for name in names:
        if name not in OFFLINE:
            import evaluate

            remote[name] = evaluate.load(name)

    def compute_metrics(eval_prediction):
        logits, labels = eval_prediction
        logits = logits[0] if isinstance(logits, tuple) else logits
        predictions = np.argmax(logits, axis=-1)
        results = {}
        for name in names:
            if name in OFFLINE:
                results[name] = float(OFFLINE[name](labels, predictions, average))
            else:
                results.update(remote[name].compute(predictions=predictions,
                                                    references=labels))
        return results

    return compute_metrics


def add_loss_metrics(metrics: dict, names: list[str], prefix: str = "eval") -> dict:
    loss = metrics.get(f"{prefix}_loss")
    if "perplexity" in names and loss is not None:
        metrics[f"{prefix}_perplexity"] = math.exp(min(loss, 50.0))
    return metrics
