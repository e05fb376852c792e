"""The images cannot be built here (no Docker engine): their Dockerfiles are read as
instructions and checked against pyproject.toml and the lock. Each check is shown to fail on
a Dockerfile broken the way it guards against."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tests.support import lock

REPO = lock.REPO
OPERATOR = REPO / "Dockerfile"
TRAINER = REPO / "trainer_image/Dockerfile"
# Python of each image, to read the lock's markers with.
IMAGE_PYTHON = {OPERATOR: "3.11.10", TRAINER: "3.12.3"}
IMAGE_EXTRA = {OPERATOR: "operator", TRAINER: "trainer"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined and
    comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines()
                                             if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in (raw.strip() for raw in joined.splitlines()) if line]


def pip_installs(run: str) -> list[list[str]]:
    """The argument lists of each `pip install` in a RUN's shell command."""
    found = []
    for command in re.split(r"&&|\|\||;", run):
        words = shlex.split(command)
        for start in range(len(words) - 1):
            if words[start].endswith("pip") and words[start + 1] == "install":
                found.append(words[start + 2:])
    return found


OPTIONS_WITH_VALUE = {"-c", "--constraint", "-r", "--requirement", "-i", "--index-url",
                      "--extra-index-url", "-t", "--target"}


def split_options(arguments: list[str]) -> tuple[dict[str, str], set[str], list[str]]:
    """(options that take a value, flags, requirements) of one pip install."""
    valued, flags, requirements = {}, set(), []
    words = iter(arguments)
    for word in words:
        if word in OPTIONS_WITH_VALUE:
            valued[word] = next(words, "")
        elif word.startswith("-"):
            flags.add(word)
        else:
            requirements.append(word)
    return valued, flags, requirements


def package_requirement(word: str) -> tuple[Requirement | None, set[str]]:
    """A PyPI requirement, or (None, extras) for a local path or wheel of ftjob."""
    path, _, extras = word.partition("[")
    if path.startswith((".", "/")) or path.endswith(".whl"):
        return None, {e.strip() for e in extras.rstrip("]").split(",") if e.strip()}
    return Requirement(word), set()


def image_problems(text: str, python: str, extra: str) -> list[str]:
    """What makes an image install something else than the lock, or less than the extra."""
    steps = instructions(text)
    problems = []
    lock_copies = {args.split()[-1] for kind, args in steps
                   if kind == "COPY" and args.split()[0] == "requirements/lock.txt"}
    if not lock_copies:
        problems.append("does not COPY requirements/lock.txt into the image")
    locked = lock.versions_for(lock.linux_python(python))
    installed, extras_installed = set(), set()
    for kind, args in steps:
        if kind != "RUN":
            continue
        for arguments in pip_installs(args):
            valued, _, words = split_options(arguments)
            constraint = valued.get("-c") or valued.get("--constraint")
            if constraint not in lock_copies:
                problems.append(f"pip install {' '.join(words)} is not constrained by the lock")
            for word in words:
                try:
                    requirement, extras = package_requirement(word)
                except InvalidRequirement:
                    problems.append(f"cannot read requirement {word!r}")
                    continue
                extras_installed |= extras
                if requirement is None:
                    continue
                name = canonicalize_name(requirement.name)
                installed.add(name)
                if name not in locked:
                    problems.append(f"{name} is not in the lock")
                elif requirement.specifier:
                    problems.append(f"{word} pins a version itself; the lock pins {locked[name]}")
    for inner in extras_installed:
        installed |= {canonicalize_name(r.name) for r in lock.requirements_of(inner)}
    wanted = {canonicalize_name(r.name) for r in lock.requirements_of(extra)}
    problems += [f"{name} of the [{extra}] extra is not installed"
                 for name in sorted(wanted - installed)]
    return problems


def deepspeed_problems(text: str) -> list[str]:
    """DeepSpeed's ops compile at build time against the installed torch, with nvcc of the
    CUDA version torch was built with."""
    steps = instructions(text)
    problems = []
    runs = [(index, pip_installs(args)) for index, (kind, args) in enumerate(steps)
            if kind == "RUN"]

    def first_install(name: str) -> tuple[int, list[str]] | None:
        for index, installs in runs:
            for arguments in installs:
                if name in [w.split("[")[0].split("=")[0] for w in split_options(arguments)[2]]:
                    return index, arguments
        return None

    torch, deepspeed = first_install("torch"), first_install("deepspeed")
    if deepspeed is None:
        return ["DeepSpeed is not installed in a step of its own"]
    if torch is None or torch[0] >= deepspeed[0]:
        problems.append("torch is not installed before DeepSpeed")
    if "--no-build-isolation" not in split_options(deepspeed[1])[1]:
        problems.append("DeepSpeed is built in pip's isolation, where torch is missing")
    if "ds_report" not in steps[deepspeed[0]][1]:
        problems.append("the DeepSpeed step does not run ds_report")
    environment = " ".join(args for kind, args in steps[:deepspeed[0]] if kind == "ENV")
    if "DS_BUILD_OPS=1" not in environment.split():
        problems.append("DS_BUILD_OPS=1 is not set before DeepSpeed is installed")
    base = steps[0][1].split()[0]
    cuda = re.match(r"nvidia/cuda:(\d+\.\d+)\.\d+-", base)
    runtime = lock.versions_for(lock.linux_python(IMAGE_PYTHON[TRAINER])).get(
        "nvidia-cuda-runtime")
    torch_cuda = f"{runtime.major}.{runtime.minor}" if runtime else None
    if not cuda or cuda.group(1) != torch_cuda:
        problems.append(f"the build stage {base} is not CUDA {torch_cuda}, "
                        "which the locked torch was built with")
    return problems


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_image_installs_its_extra_from_the_lock(path):
    assert image_problems(path.read_text(), IMAGE_PYTHON[path], IMAGE_EXTRA[path]) == []


def test_trainer_image_compiles_deepspeed_against_the_locked_torch():
    assert deepspeed_problems(TRAINER.read_text()) == []


def broken(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}: update this case"
    return text.replace(old, new)


@pytest.mark.parametrize("path,old,new,expected", [
    (TRAINER, '".[trainer]"', '"."', "transformers of the [trainer] extra is not installed"),
    (TRAINER, "-c /tmp/lock.txt --no-build-isolation deepspeed", "deepspeed",
     "not constrained by the lock"),
    (TRAINER, "COPY requirements/lock.txt /tmp/lock.txt", "",
     "does not COPY requirements/lock.txt"),
    (TRAINER, "torch setuptools", "torch==2.15.0 setuptools", "pins a version itself"),
    (TRAINER, "torch setuptools", "torch setuptools left-pad", "left-pad is not in the lock"),
    (OPERATOR, "[operator]", "", "kopf of the [operator] extra is not installed"),
    (OPERATOR, 'pip install -c /tmp/lock.txt "/wheels', 'pip install "/wheels',
     "not constrained by the lock"),
], ids=["extra-dropped", "unconstrained", "no-lock", "own-pin", "unlocked-package",
        "operator-extra-dropped", "operator-unconstrained"])
def test_image_check_fails_when_the_lock_is_not_followed(path, old, new, expected):
    problems = image_problems(broken(path, old, new), IMAGE_PYTHON[path], IMAGE_EXTRA[path])
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize("old,new,expected", [
    ("RUN pip install -c /tmp/lock.txt --no-build-isolation deepspeed && ds_report", "",
     "DeepSpeed is not installed in a step of its own"),
    ("--no-build-isolation deepspeed", "deepspeed", "built in pip's isolation"),
    ("deepspeed && ds_report", "deepspeed", "does not run ds_report"),
    ("ENV DS_BUILD_OPS=1", "ENV DS_BUILD_OPS=0", "DS_BUILD_OPS=1 is not set"),
    ("nvidia/cuda:13.2.1-cudnn-devel", "nvidia/cuda:12.8.1-cudnn-devel", "is not CUDA 13.2"),
    ("RUN pip install -c /tmp/lock.txt torch setuptools ninja packaging", "",
     "torch is not installed before DeepSpeed"),
], ids=["deepspeed-removed", "isolated", "no-report", "no-ops", "cuda-mismatch", "no-torch"])
def test_deepspeed_check_fails_on_a_broken_trainer_image(old, new, expected):
    problems = deepspeed_problems(broken(TRAINER, old, new))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_images_are_pinned_non_root_and_versioned(path):
    steps = instructions(path.read_text())
    for kind, args in steps:
        if kind == "FROM":
            image = args.split()[0]
            assert ":" in image and not image.endswith(":latest"), (path, args)
    users = [args.split()[0] for kind, args in steps if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), path
    version = lock.project()["version"]
    assert ("ARG", f"FTJOB_VERSION={version}") in steps, path


def test_operator_image_has_no_trainer_dependencies():
    installed = " ".join(args for kind, args in instructions(OPERATOR.read_text())
                         if kind == "RUN")
    assert "[operator]" in installed and "torch" not in installed and "[trainer]" not in installed
    assert (REPO / ".dockerignore").exists()
