"""The images cannot be built here (no Docker engine): their Dockerfiles are checked as text."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO


def test_dockerfiles_are_pinned_non_root_and_match_pyproject():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for path in (REPO / "Dockerfile", REPO / "trainer_image/Dockerfile"):
        text = path.read_text()
        bases = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
        assert bases, path
        for base in bases:
            image = base.split(" AS ")[0]
            assert ":" in image and not image.endswith(":latest"), (path, base)
        users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
        assert users and users[-1] not in ("root", "0"), path
        assert f"FTJOB_VERSION={project['version']}" in text, path
    trainer = (REPO / "trainer_image/Dockerfile").read_text()
    extras = project["optional-dependencies"]["trainer"]
    for requirement in extras:
        assert requirement.split(">")[0].split("<")[0].split("=")[0] in trainer, requirement
    assert "DS_BUILD_OPS=1" in trainer
    operator = (REPO / "Dockerfile").read_text()
    assert "[operator]" in operator and "[trainer]" not in operator
    assert Path(REPO / ".dockerignore").exists()
