"""The supervisor of a user's own script: what it lets through of the script's output."""

from __future__ import annotations

from ftjob_trainer.supervise import redact


def test_secret_values_are_blanked_in_what_a_script_printed():
    environment = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "HF_TOKEN": "hf_abcdef",
                   "MY_API_KEY": "k-12345", "PATH": "/usr/bin", "SHORT_TOKEN": "abc"}
    text = "s3cr3t-value hf_abcdef k-12345 /usr/bin abc"
    assert redact(text, environment) == "*** *** *** /usr/bin abc"
