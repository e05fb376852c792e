"""ftjob: run distributed Hugging Face fine-tuning from one FineTuneJob resource."""

__version__ = "0.1.0"

GROUP = "ftjob.dev"
VERSION = "v1alpha1"
KIND = "FineTuneJob"
PLURAL = "finetunejobs"
API_VERSION = f"{GROUP}/{VERSION}"
