"""ftjob: run distributed Hugging Face fine-tuning from one FineTuneJob resource."""

__version__ = "0.1.0"

GROUP = "ftjob.dev"
VERSION = "v1alpha1"
KIND = "FineTuneJob"
PLURAL = "finetunejobs"
API_VERSION = f"{GROUP}/{VERSION}"
# The trainer's exit code once SIGTERM made it save a checkpoint and stop (EX_TEMPFAIL):
# a preemption, not a failure of the job.
EXIT_PREEMPTED = 75


def __getattr__(name: str):
    # `from ftjob import Client` loads the Kubernetes client only when it is used, so
    # `ftjob validate` stays light.
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(name)
