"""The command a node runs, built once for `ftjob run` and the operator: the launcher
(torchrun or accelerate) with this node's place in the job, then the program, which is
ftjob's trainer or, for spec.script, the user's script under ftjob's supervisor."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .api.spec import FineTuneJob
from .render import ACCELERATE_CONFIG, TRAINER_CONFIG

RENDEZVOUS_PORT = 29500


@dataclass(frozen=True)
class Node:
    """Where the command runs: how to start the launchers and Python there, and this
    node's place in the job (None where there is one node)."""

    python: str
    torchrun: tuple[str, ...]
    accelerate: tuple[str, ...]
    config_dir: str
    rank: str | None = None  # this node's index (the Indexed Job's completion index)
    rendezvous_host: str | None = None
    # What runs a built-in task's launcher, where one is needed (a pod: the container's
    # exit code must say "saved and stopped" after SIGTERM, which the launcher's does not).
    launcher_wrapper: tuple[str, ...] = ()


def this_machine(config_dir: str) -> Node:
    """`ftjob run`: the interpreter running ftjob, its launchers as modules."""
    return Node(python=sys.executable,
                torchrun=(sys.executable, "-m", "torch.distributed.run"),
                accelerate=(sys.executable, "-m", "accelerate.commands.launch"),
                config_dir=config_dir)


def in_pod(config_dir: str, rank: str, rendezvous_host: str) -> Node:
    """A training pod: the trainer image's own commands."""
    return Node(python="python", torchrun=("torchrun",), accelerate=("accelerate", "launch"),
                config_dir=config_dir, rank=rank, rendezvous_host=rendezvous_host,
                launcher_wrapper=("python", "-m", "ftjob_trainer.preemptible", "--"))


def launcher(job: FineTuneJob, node: Node) -> list[str]:
    distributed = job.spec.distributed
    if distributed.launcher == "accelerate":
        command = [*node.accelerate, "--config_file", f"{node.config_dir}/{ACCELERATE_CONFIG}"]
        if node.rank is not None:
            command += ["--machine_rank", node.rank]
        if distributed.nodes > 1:
            command += ["--main_process_ip", node.rendezvous_host,
                        "--main_process_port", str(RENDEZVOUS_PORT)]
        return command
    command = [*node.torchrun, "--nproc-per-node", str(distributed.nproc_per_node)]
    if distributed.nodes > 1:
        return command + ["--nnodes", str(distributed.nodes), "--node-rank", node.rank,
                          "--master-addr", node.rendezvous_host,
                          "--master-port", str(RENDEZVOUS_PORT)]
    return command + ["--standalone"]


def launch_command(job: FineTuneJob, node: Node) -> list[str]:
    config = f"{node.config_dir}/{TRAINER_CONFIG}"
    script = job.spec.script
    if script is None:
        return [*node.launcher_wrapper, *launcher(job, node), "-m", "ftjob_trainer", config]
    return [node.python, "-m", "ftjob_trainer.supervise", config, "--",
            *launcher(job, node), script.path, *script.args]
