"""The FineTuneJob API: typed models (the single source of truth for the CRD) and loading."""

from .load import SpecError, load_job, parse_job
from .spec import FineTuneJob, FineTuneJobSpec
from .status import FineTuneJobStatus

__all__ = ["FineTuneJob", "FineTuneJobSpec", "FineTuneJobStatus", "SpecError", "load_job",
           "parse_job"]
