"""The program that runs inside ftjob's training pods (and under `ftjob run`).

It must not import kopf or the operator: the contract between them is the config JSON.
"""


def __getattr__(name: str):
    # FtjobCallback imports transformers and torch; `from ftjob_trainer import report`
    # stays light.
    if name == "FtjobCallback":
        from .callbacks import FtjobCallback

        return FtjobCallback
    raise AttributeError(name)
