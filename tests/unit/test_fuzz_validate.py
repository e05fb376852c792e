"""Property-based: hostile files through `ftjob validate` never end in a traceback, and every
refusal names a field path or says what is wrong with the file as a whole."""

from __future__ import annotations

import contextlib
import io
import re

from hypothesis import HealthCheck, given, settings

from ftjob import cli
from tests.support.hostile import COUNTS, hostile_files

TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "(document)")
EXAMPLES = 1000


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=hostile_files())
def test_ftjob_validate_answers_every_hostile_file_in_lines(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "job.yaml"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["validate", str(path)])
    COUNTS["ftjob validate"] = COUNTS.get("ftjob validate", 0) + 1
    assert code in (0, 1)
    assert "Traceback" not in err.getvalue()
    for line in err.getvalue().splitlines():
        if line.startswith(f"{path}"):
            # "FILE[ (document N)]: not a valid FineTuneJob:" before its field lines, or one
            # line about the file as a whole
            assert re.match(rf"{re.escape(str(path))}( \(document \d+\))?: \S", line), line
        else:
            assert line.startswith("  ") and line.strip().startswith(TOP_LEVEL), line
    if code == 0:
        assert "valid FineTuneJob" in out.getvalue()
