"""The shell completion script, run by a real bash: verbs and flags complete from the
parser; job names come from `ftjob list -o name` (tests/operator/test_client.py runs that
against the API server)."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from ftjob.cli import parser
from ftjob.completion import completion_script


def complete(line: str, shell: str = "bash", ftjob_list: str = "") -> list[str]:
    """What <TAB> offers after `line` (a trailing space starts a new word). `ftjob` on the
    PATH of this bash is a function printing `ftjob_list`, as `ftjob list -o name` would."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    script = completion_script(parser(), shell).replace(
        "autoload -U +X bashcompinit && bashcompinit\n", "")  # zsh's loader: not in bash
    program = (f"{script}\nftjob() {{ echo \"$*\" > \"$CALLS\"; printf '%s\\n' {ftjob_list}; }}\n"
               f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
               f"COMP_CWORD={len(words) - 1}\n_ftjob\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True,
                            env={"CALLS": "/dev/null", "PATH": "/usr/bin:/bin"}, check=True)
    return [line for line in result.stdout.splitlines() if line]


@pytest.mark.parametrize("line, offered", [
    ("ftjob ", ["validate", "run", "crd", "submit", "list", "status", "watch", "logs",
                "suspend", "resume", "delete", "download", "plot", "upload", "completion"]),
    ("ftjob s", ["submit", "status", "suspend"]),
    ("ftjob validate --f", ["--fit"]),
    ("ftjob logs --n", ["--namespace", "--node"]),
    ("ftjob submit --w", ["--watch"]),
    ("ftjob plot bert --end", ["--endpoint-url"]),
])
def test_verbs_and_flags(line, offered):
    assert complete(line) == offered


@pytest.mark.parametrize("line, offered", [
    ("ftjob status ", ["bert-mrpc", "gpt-sft"]),
    ("ftjob logs g", ["gpt-sft"]),
    ("ftjob watch -n team-a ", ["bert-mrpc", "gpt-sft"]),
    ("ftjob logs -n ", []),        # a namespace goes there, not a job
    ("ftjob submit ", []),         # a file: bash's own file completion (-o default)
])
def test_job_names_come_from_ftjob_list(line, offered):
    assert complete(line, ftjob_list="bert-mrpc gpt-sft") == offered


def test_the_namespace_given_is_the_one_listed(tmp_path):
    calls = tmp_path / "calls"
    words = ["ftjob", "status", "-n", "team-a", ""]
    program = (f"{completion_script(parser(), 'bash')}\n"
               f"ftjob() {{ echo \"$*\" > {calls}; }}\n"
               f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
               f"COMP_CWORD=4\n_ftjob\n")
    subprocess.run(["bash", "-c", program], check=False)  # compgen: 1 when nothing matches
    assert calls.read_text().split() == ["list", "-o", "name", "-n", "team-a"]


def test_zsh_loads_bash_completion_first():
    assert completion_script(parser(), "zsh").splitlines()[1] == \
        "autoload -U +X bashcompinit && bashcompinit"
