"""Rewrites the golden files after a reviewed change: python -m tests.unit.golden.regenerate"""

import json

from ftjob import render
from ftjob.api import load_job
from tests.unit.test_render import EXAMPLES, GOLDEN, PLACEMENT

job = load_job(EXAMPLES / "quickstart.yaml")
(GOLDEN / "quickstart-config.json").write_text(
    json.dumps(render.trainer_config(job, PLACEMENT), indent=2, sort_keys=True) + "\n")

import yaml  # noqa: E402

from tests.unit.test_manifests import golden_objects  # noqa: E402

(GOLDEN / "multinode-deepspeed.yaml").write_text(yaml.safe_dump_all(golden_objects(),
                                                                    sort_keys=True))
