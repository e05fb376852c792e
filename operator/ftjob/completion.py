"""`ftjob completion bash|zsh`: a completion script made from the command's own parser, so
it never falls behind a new verb or flag. Verbs and flags complete offline; a job NAME
completes from `ftjob list -o name` in the namespace given with -n (or the context's)."""

from __future__ import annotations

import argparse

SCRIPT = """# ftjob {shell} completion: source <(ftjob completion {shell})
{preamble}_ftjob() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
  local verb=${{COMP_WORDS[1]}} opts="" names=0 i ns=()
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{verbs}" -- "$cur"))
    return
  fi
  case "$verb" in
{cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif [ "$names" = 1 ] && [[ " {valued} " != *" $prev "* ]]; then
    for ((i = 2; i < ${{#COMP_WORDS[@]}} - 1; i++)); do
      case "${{COMP_WORDS[i]}}" in -n|--namespace) ns=(-n "${{COMP_WORDS[i+1]}}");; esac
    done
    COMPREPLY=($(compgen -W "$(ftjob list -o name "${{ns[@]}}" 2>/dev/null)" -- "$cur"))
  fi
}}
complete -o default -F _ftjob ftjob
"""


def _verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subparsers.choices)


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    verbs = _verbs(parser)
    cases = []
    for name, sub in verbs.items():
        flags = sorted(flag for action in sub._actions for flag in action.option_strings)
        takes_name = any(action.dest == "name" for action in sub._actions)
        cases.append(f'    {name}) opts="{" ".join(flags)}"; names={int(takes_name)};;')
    preamble = "autoload -U +X bashcompinit && bashcompinit\n" if shell == "zsh" else ""
    # Flags followed by a value: the word after one is that value, never a job name.
    valued = sorted({flag for sub in verbs.values() for action in sub._actions
                     if action.option_strings and action.nargs != 0
                     for flag in action.option_strings})
    return SCRIPT.format(shell=shell, preamble=preamble, verbs=" ".join(verbs),
                         cases="\n".join(cases), valued=" ".join(valued))
