"""The lock (requirements/lock.txt) covers what pyproject.toml asks for, on every Python the
project and its images run on, and it is what the tests run with."""

from __future__ import annotations

import importlib.metadata

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support import lock

# CI and the operator image (3.11), the trainer image (Ubuntu 24.04's 3.12), the oldest
# Python pyproject.toml allows (3.10).
PYTHONS = ["3.10.16", "3.11.10", "3.12.3"]
EXTRAS = [None, *lock.project()["optional-dependencies"]]


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("extra", EXTRAS)
def test_every_requirement_is_locked_within_its_range(python, extra):
    environment = lock.linux_python(python)
    locked = lock.versions_for(environment)
    problems = []
    for requirement in lock.requirements_of(extra):
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{requirement} is not in the lock")
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            problems.append(f"{requirement} does not allow the locked {locked[name]}")
    assert not problems, "pyproject.toml and the lock disagree; run `make lock`:\n" + \
        "\n".join(problems)


def test_the_tests_run_with_the_locked_versions():
    """`make install` installs from the lock; a different version here means the suite is not
    testing what CI and the images use."""
    different = []
    for name, version in lock.versions_for().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # platform-specific pins the dev extra does not pull in here
        if Version(installed) != version:
            different.append(f"{name} {installed} (locked {version})")
    missing = [str(r) for r in lock.requirements_of("dev")
               if not _installed(canonicalize_name(r.name))]
    assert not different and not missing, \
        f"run `make install`; differ: {different}; missing: {missing}"


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def test_a_lock_line_with_a_marker_applies_only_where_it_says():
    numpy = [pin for pin in lock.pins("numpy==1.0 ; python_full_version < '3.12'\n"
                                      "numpy==2.0 ; python_full_version >= '3.12'\n")]
    assert [p.version for p in numpy if p.applies(lock.linux_python("3.11.10"))] == \
        [Version("1.0")]
    assert [p.version for p in numpy if p.applies(lock.linux_python("3.12.3"))] == \
        [Version("2.0")]
