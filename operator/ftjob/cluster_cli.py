"""`ftjob submit | list | status | watch | logs | suspend | resume | delete | download |
plot`: the SDK
(ftjob.client) from a terminal. Each verb prints what a person wants to read and exits 0,
or prints one line naming the problem and exits non-zero (1 for a refused spec, 2 for
anything else the cluster refused or could not do, 3 when `watch` sees the job fail)."""

from __future__ import annotations

import sys
from datetime import datetime, timezone

from . import goodput
from .api.load import SpecError

EXIT_SPEC, EXIT_CLUSTER, EXIT_JOB_FAILED = 1, 2, 3


def duration(seconds: float | None) -> str:
    """1h02m, 3m10s, 45s: what fits a column."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def age(timestamp: str, now: datetime | None = None) -> str:
    created = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return duration(((now or datetime.now(timezone.utc)) - created).total_seconds())


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def list_rows(views, now: datetime | None = None) -> list[list[str]]:
    rows = [["NAME", "PHASE", "PROGRESS", "STEP", "LOSS", "ETA", "AGE"]]
    for view in views:
        progress = view.status.progress
        percent = f"{progress.percent:.0f}%" if progress and progress.percent is not None \
            else "-"
        step = f"{progress.step}/{progress.max_steps or '?'}" if progress else "-"
        running = view.status.phase == "Running"
        rows.append([view.name, view.status.phase or "-", percent, step,
                     _number(progress.loss if progress else None),
                     duration(progress.eta_seconds) if progress and running else "-",
                     age(view.created, now)])
    return rows


def describe(view, now: datetime | None = None) -> str:
    """`ftjob status NAME`."""
    status = view.status
    restarts = f", {status.restarts} restart{'s' if status.restarts != 1 else ''}" \
        if status.restarts else ""
    lines = [f"Name:       {view.namespace}/{view.name}",
             f"Phase:      {status.phase or 'new'} (attempt {status.attempt}{restarts})",
             f"Message:    {status.message or '-'}"]
    if status.progress:
        p = status.progress
        lines.append(f"Progress:   step {p.step}/{p.max_steps or '?'}"
                     + (f" ({p.percent:.0f}%)" if p.percent is not None else "")
                     + f", loss {_number(p.loss)}, learning rate {_number(p.learning_rate)}, "
                     f"{_number(p.samples_per_second)} samples/s, ETA "
                     f"{duration(p.eta_seconds)}")
    if status.checkpoint:
        c = status.checkpoint
        lines.append(f"Checkpoint: {c.uri} (step {c.step}, saved {c.saved_at})")
    if status.output:
        lines.append(f"Output:     {status.output.uri}")
    ledger = goodput.live(status.model_dump(by_alias=True, exclude_none=True),
                          (now or datetime.now(timezone.utc)).replace(tzinfo=None))
    if ledger and ledger.get("ratio") is not None:
        spent = ", ".join(f"{cause} {duration(ledger[f'{cause}Seconds'])}"
                          for cause in goodput.CAUSES if ledger.get(f"{cause}Seconds"))
        lines.append(f"Goodput:    {ledger['ratio']:.0%} of {duration(ledger['wallSeconds'])}"
                     f" ({spent})")
    if status.metrics:
        lines.append("Metrics:    " + ", ".join(f"{k}={_number(v)}" for k, v in
                                                sorted(status.metrics.items())))
    if view.spec_error:
        lines.append(f"Spec:       not readable by this ftjob: {view.spec_error}")
    if status.conditions:
        lines.append("Conditions:")
        rows = [["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"]] + [
            [c.type, c.status, c.reason, c.last_transition_time, c.message or ""]
            for c in status.conditions]
        lines += ["  " + line for line in table(rows).splitlines()]
    return "\n".join(lines)


def _client(args):
    from .client import Client

    return Client(namespace=args.namespace, kubeconfig=args.kubeconfig,
                  context=args.context)


def _fail(error: Exception) -> int:
    from .client import JobFailed

    if isinstance(error, SpecError):
        print("ftjob: the job was refused:", file=sys.stderr)
        for path, message in error.problems:
            print(f"  {path}: {message}", file=sys.stderr)
        return EXIT_SPEC
    print(f"ftjob: {error}", file=sys.stderr)
    return EXIT_JOB_FAILED if isinstance(error, JobFailed) else EXIT_CLUSTER


def _verb(run):
    """A verb's body, its errors turned into one line and an exit code."""
    def handler(args) -> int:
        from .client import ClientError

        try:
            return run(args) or 0
        except (SpecError, ClientError, TimeoutError) as error:
            return _fail(error)
        except KeyboardInterrupt:
            return 130
    return handler


def cmd_submit(args) -> int:
    client = _client(args)
    view = client.submit(args.file, args.set)
    print(f"finetunejob {view.namespace}/{view.name} submitted")
    if args.watch:
        return follow(client, view.name)
    return 0


def cmd_list(args) -> int:
    views = _client(args).list()
    if args.output == "name":  # for scripts and shell completion
        print("\n".join(view.name for view in views))
        return 0
    if not views:
        print("No FineTuneJobs.")
        return 0
    print(table(list_rows(views)))
    return 0


def cmd_status(args) -> int:
    print(describe(_client(args).get(args.name)))
    return 0


def follow(client, name: str) -> int:
    """The progress bar of `ftjob run`, fed by the job's status; phases, evaluations and
    checkpoints printed above it."""
    from ftjob_trainer.reporting import TerminalSink

    from .client import CheckpointSaved, Evaluated, PhaseChanged, Progressed

    sink, attempt, phase = TerminalSink(), 0, None
    try:
        for event in client.watch(name):
            if isinstance(event, PhaseChanged):
                phase = event.phase
                if event.attempt != attempt and sink.bar is not None:
                    sink.close()  # a new attempt draws a new bar
                attempt = event.attempt
                sink.note(f"{event.phase}: {event.message}")
            elif isinstance(event, Progressed):
                progress = event.progress
                if sink.bar is None and progress.max_steps:
                    sink.start(total=progress.max_steps, initial=progress.step)
                sink.write({"event": "progress", "step": progress.step, "loss": progress.loss,
                            "learningRate": progress.learning_rate,
                            "samplesPerSecond": progress.samples_per_second})
            elif isinstance(event, Evaluated):
                sink.write({"event": "eval", "step": event.step, "metrics": event.metrics})
            elif isinstance(event, CheckpointSaved):
                sink.note(f"Checkpoint at step {event.checkpoint.step}: "
                          f"{event.checkpoint.uri}")
    finally:
        sink.close()
    return {"Succeeded": 0, "Failed": EXIT_JOB_FAILED}.get(phase, 0)


def cmd_watch(args) -> int:
    return follow(_client(args), args.name)


def cmd_logs(args) -> int:
    for line in _client(args).logs(args.name, node=args.node, attempt=args.attempt,
                                   follow=args.follow):
        print(line, flush=args.follow)
    return 0


def cmd_suspend(args) -> int:
    _client(args).suspend(args.name)
    print(f"finetunejob {args.name} suspending: its pods save a checkpoint and stop")
    return 0


def cmd_resume(args) -> int:
    _client(args).resume(args.name)
    print(f"finetunejob {args.name} resuming from its newest complete checkpoint")
    return 0


def cmd_delete(args) -> int:
    _client(args).delete(args.name)
    print(f"finetunejob {args.name} deleted (its checkpoints and model in storage stay)")
    return 0


def cmd_download(args) -> int:
    dest = _client(args).download(args.name, args.dest, endpoint_url=args.endpoint_url)
    files = sum(1 for path in dest.rglob("*") if path.is_file())
    print(f"Downloaded {args.name}'s model to {dest} ({files} files)")
    return 0


def cmd_plot(args) -> int:
    """A run folder of `ftjob run`, or a job on the cluster."""
    from pathlib import Path

    from .history import History, plot

    if Path(args.name).is_dir():
        try:
            history, title = History.read(args.name), Path(args.name).resolve().name
        except FileNotFoundError as error:
            print(f"ftjob: {error}", file=sys.stderr)
            return EXIT_CLUSTER
    else:
        history, title = _client(args).history(args.name, args.endpoint_url), args.name
    if not history.training("loss")[0] and not history.evaluations():
        print(f"ftjob: {args.name} has logged no step yet: nothing to plot", file=sys.stderr)
        return EXIT_CLUSTER
    output = args.output or f"{title}.png"
    plot(history, title).savefig(output, dpi=110)
    print(f"Wrote {output}")
    return 0


def cmd_upload(args) -> int:
    """A file or a folder's files to storage, for data and scripts the pods read."""
    from pathlib import Path

    from ftjob_trainer.errors import TrainerError
    from ftjob_trainer.storage import Location, is_storage_uri, local_files

    source = Path(args.source)
    if not source.exists():
        print(f"ftjob: {source} does not exist", file=sys.stderr)
        return EXIT_CLUSTER
    if not is_storage_uri(args.uri):
        print(f"ftjob: {args.uri} is not a storage URI (s3://, gs://, az://, file://)",
              file=sys.stderr)
        return EXIT_CLUSTER
    root, files = (source, local_files(source)) if source.is_dir() else \
        (source.parent, [source.name])
    try:
        Location(args.uri, args.endpoint_url).upload_files(root, files)
    except TrainerError as error:
        print(f"ftjob: {error}", file=sys.stderr)
        return EXIT_CLUSTER
    print(f"Uploaded {len(files)} file{'s' if len(files) != 1 else ''} to {args.uri}")
    return 0


def add_commands(commands) -> None:
    """The cluster verbs, on the `ftjob` command's subparsers."""
    def verb(name: str, handler, help: str, job_name: bool = True):
        sub = commands.add_parser(name, help=help)
        if job_name:
            sub.add_argument("name", metavar="NAME")
        sub.add_argument("-n", "--namespace", default=None,
                         help="namespace (default: the kubeconfig context's)")
        sub.add_argument("--kubeconfig", default=None,
                         help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
        sub.add_argument("--context", default=None, help="kubeconfig context")
        sub.set_defaults(handler=_verb(handler))
        return sub

    submit = verb("submit", cmd_submit, "create a FineTuneJob on the cluster", False)
    submit.add_argument("file", metavar="JOB.yaml")
    submit.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="override a field, e.g. --set training.maxSteps=20")
    submit.add_argument("--watch", action="store_true", help="then follow it as `watch` does")
    listing = verb("list", cmd_list, "the namespace's FineTuneJobs", False)
    listing.add_argument("-o", "--output", choices=["table", "name"], default="table",
                         help="name: one job name per line")
    verb("status", cmd_status, "one job: phase, progress, checkpoint, metrics, conditions")
    verb("watch", cmd_watch, "follow a job's progress until it finishes")
    logs = verb("logs", cmd_logs, "the trainer's output on one node")
    logs.add_argument("--node", type=int, default=0, help="node index (default 0)")
    logs.add_argument("--attempt", type=int, default=None,
                      help="attempt (default: the current one; 0 is the data check)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    verb("suspend", cmd_suspend, "save a checkpoint and stop the pods")
    verb("resume", cmd_resume, "start again from the newest complete checkpoint")
    verb("delete", cmd_delete, "delete the job and what it owns (storage stays)")
    download = verb("download", cmd_download, "copy the job's exported model to a folder")
    download.add_argument("dest", metavar="DIR")
    plot = verb("plot", cmd_plot, "draw loss, learning rate and eval metrics against step "
                "(NAME: a job on the cluster, or the run folder of ftjob run)")
    plot.add_argument("-o", "--output", default=None, help="PNG file (default: NAME.png)")
    upload = commands.add_parser("upload", help=(
        "copy a file or a folder's files to storage (data or a script for the pods)"))
    upload.add_argument("source", metavar="PATH")
    upload.add_argument("uri", metavar="URI")
    upload.set_defaults(handler=cmd_upload)
    for sub in (download, plot, upload):
        sub.add_argument("--endpoint-url", default=None, help=(
            "the storage endpoint as this machine reaches it (default: $AWS_ENDPOINT_URL, "
            "else the job's)"))
