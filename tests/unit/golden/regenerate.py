"""Rewrites the golden files after a reviewed change: python -m tests.unit.golden.regenerate"""

import json

from ftjob import render
from ftjob.api import load_job
from tests.unit.test_render import EXAMPLES, GOLDEN, PLACEMENT

job = load_job(EXAMPLES / "quickstart.yaml")
(GOLDEN / "quickstart-config.json").write_text(
    json.dumps(render.trainer_config(job, PLACEMENT), indent=2, sort_keys=True) + "\n")
