"""The `ftjob` command: validate, run locally, print the CRD; and on a cluster submit,
list, status, watch, logs, suspend, resume, delete (cluster_cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .api.load import SpecError, apply_overrides, load_job, parse_job, read_documents
from .cluster_cli import add_commands


def _print_errors(source: str, error: SpecError) -> None:
    if [path for path, _ in error.problems] == [source]:  # the file itself, not a field
        print(f"{source}: {error.problems[0][1]}", file=sys.stderr)
        return
    print(f"{source}: not a valid FineTuneJob:", file=sys.stderr)
    for path, message in error.problems:
        print(f"  {path}: {message}", file=sys.stderr)


def cmd_validate(args) -> int:
    """Every document of every file, as `kubectl apply -f` would send each of them; the exit
    code of the first failure (1 for a spec, the trainer's code for data)."""
    code = 0
    for file in args.files:
        try:
            documents = read_documents(file)
        except SpecError as error:
            _print_errors(file, error)
            code = code or 1
            continue
        for index, document in enumerate(documents, start=1):
            where = file if len(documents) == 1 else f"{file} (document {index})"
            try:
                job = parse_job(apply_overrides(document, args.set))
            except SpecError as error:
                _print_errors(where, error)
                code = code or 1
                continue
            print(f"{where}: valid FineTuneJob {job.metadata.name}")
            if args.data:
                code = code or _check_data(job, Path(file), where)
            if args.fit:
                code = code or _check_fit(job, Path(file), where, args.gpu_memory)
    return code


def _check_fit(job, job_file: Path, where: str, gpu_memory: float | None) -> int:
    """The job's GPU memory per GPU against `gpu_memory`; 1 when it does not fit."""
    from . import local, memory

    if job.spec.script is not None:
        print(f"{where}: spec.script trains a model of its own making; nothing to size")
        return 0
    try:
        shape = memory.shape_of(local.resolve_local_paths(job, job_file.resolve().parent))
    except (OSError, ValueError) as error:
        print(f"{where}: fit: cannot read the model's config.json: {error}", file=sys.stderr)
        return 66
    text, fits = memory.report(job, shape, memory.layout_of(job), gpu_memory)
    print(text)
    return 0 if fits else 1


def _check_data(job, job_file: Path, where: str) -> int:
    """The data as the trainer would load and prepare it; the exit code of its error."""
    from . import local

    if job.spec.script is not None:
        print(f"{where}: spec.script reads its own data; nothing to check")
        return 0
    try:
        report = local.check_data(job, job_file)
    except local.DataCheckFailed as error:
        print(f"{where}: data: {error}", file=sys.stderr)
        return error.exit_code
    from ftjob_trainer.data_check import format_report

    print(format_report(report))
    return 0


def _memory(text: str) -> float:
    from .memory import parse_memory

    try:
        return parse_memory(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def cmd_run(args) -> int:
    from . import local

    try:
        job = load_job(args.file, args.set)
    except SpecError as error:
        _print_errors(args.file, error)
        return 1
    if job.spec.distributed.nodes > 1:
        print(f"Note: spec.distributed.nodes is {job.spec.distributed.nodes}; locally the job "
              "runs on this machine as one node.", file=sys.stderr)
    try:
        run = local.prepare(job, Path(args.file), Path(args.run_root), args.procs)
    except (local.RunFolderBusy, local.ScriptMissing) as error:
        print(f"ftjob run: {error}", file=sys.stderr)
        return 1
    print(f"Running {job.metadata.name} (attempt {run.attempt}) with {run.procs} process(es); "
          f"run folder {run.run_dir}", file=sys.stderr)
    code = local.execute(run)
    print(local.summary(run, code))
    return code


def cmd_crd(args) -> int:
    from .crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def cmd_completion(args) -> int:
    from .completion import completion_script

    sys.stdout.write(completion_script(parser(), args.shell))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ftjob", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check FineTuneJob files")
    validate.add_argument("files", nargs="+", metavar="JOB.yaml")
    validate.add_argument("--data", action="store_true", help=(
        "also load and prepare the data as the trainer would (no weights) and report rows, "
        "token lengths, labels and rendered chats; exit 65 on bad data"))
    validate.add_argument("--fit", action="store_true", help=(
        "also estimate the GPU memory per GPU from the model's config.json (no weights): "
        "weights, gradients, optimizer states, activations; exit 1 if over --gpu-memory"))
    validate.add_argument("--gpu-memory", type=_memory, default=None, metavar="SIZE",
                          help="GPU memory to fit in, e.g. 80Gi (default: compare with "
                               "24, 48, 80 and 141 GiB)")
    validate.set_defaults(handler=cmd_validate)

    run = commands.add_parser("run", help="run a FineTuneJob on this machine")
    run.add_argument("file", metavar="JOB.yaml")
    run.add_argument("--procs", type=int, default=None,
                     help="processes (default: spec.distributed procs/GPUs per node)")
    run.add_argument("--run-root", default=".ftjob",
                     help="folder for run folders (default: .ftjob)")
    run.set_defaults(handler=cmd_run)

    for sub in (validate, run):
        sub.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                         help="override a field, e.g. --set training.maxSteps=20")

    crd = commands.add_parser("crd", help="print the FineTuneJob CRD")
    crd.set_defaults(handler=cmd_crd)
    add_commands(commands)
    completion = commands.add_parser("completion", help=(
        "print a shell completion script: source <(ftjob completion bash)"))
    completion.add_argument("shell", choices=["bash", "zsh"])
    completion.set_defaults(handler=cmd_completion)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "procs", None) is not None and args.procs < 1:
        parser().error("--procs must be at least 1")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
