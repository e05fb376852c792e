"""Reads requirements/lock.txt (made by `make lock`): which version of each package applies
in a given Python environment, and what pyproject.toml asks for."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements/lock.txt"


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: Version
    marker: Marker | None

    def applies(self, environment: dict[str, str] | None = None) -> bool:
        return self.marker is None or self.marker.evaluate(environment)


def pins(text: str | None = None) -> list[Pin]:
    """Every `name==version ; marker` line of the lock (comments and `# via` lines skipped)."""
    found = []
    for line in (LOCK.read_text() if text is None else text).splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        found.append(Pin(canonicalize_name(requirement.name), Version(specifier.version),
                         requirement.marker))
    return found


def versions_for(environment: dict[str, str] | None = None) -> dict[str, Version]:
    """Package -> the one locked version that applies in `environment` (default: this one)."""
    chosen: dict[str, Version] = {}
    for pin in pins():
        if pin.applies(environment):
            assert pin.name not in chosen, f"{pin.name} is locked twice for {environment}"
            chosen[pin.name] = pin.version
    return chosen


def linux_python(version: str) -> dict[str, str]:
    """The marker environment of CPython `version` (e.g. "3.12.3") on x86_64 Linux."""
    return {"python_version": ".".join(version.split(".")[:2]), "python_full_version": version,
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
            "os_name": "posix", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "extra": ""}


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirements_of(extra: str | None) -> list[Requirement]:
    """What installing ftjob (extra None) or ftjob[extra] adds, other extras of ftjob expanded."""
    meta = project()
    found: list[Requirement] = []
    for line in meta["optional-dependencies"][extra] if extra else meta["dependencies"]:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == canonicalize_name(meta["name"]):
            for inner in sorted(requirement.extras):
                found += requirements_of(inner)
        else:
            found.append(requirement)
    return found
