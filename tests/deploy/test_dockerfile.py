"""The Dockerfile, read instruction by instruction: stages, user, health check, entrypoint, build context.

Run: .venv/bin/pytest tests/deploy/test_dockerfile.py
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|cmake|make)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs, with comments dropped and backslash continuations joined."""
    joined = re.sub(r"\\\n(?:[ \t]*#[^\n]*\n)*", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages, with `${ARG}` resolved in each FROM."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, arguments in instructions(text):
        if keyword == "ARG" and not found:
            name, _, default = arguments.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], arguments).split()
            found.append(Stage(base=words[0], name=words[2] if len(words) > 2 else None))
        elif found:
            found[-1].instructions.append((keyword, arguments))
    return args, found


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"{arguments} is not exec (JSON) form"
    return value


def copy_sources(arguments: str) -> list[str]:
    words = [word for word in arguments.split() if not word.startswith("--")]
    return words[:-1]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether docker leaves `path` (or a folder above it) out of the build context; the last match wins.

    Covers the pattern forms .dockerignore uses here: globs per path component, a leading `**/`, and `!`.
    """
    parts = path.split("/")
    ignored = False
    for pattern in patterns:
        globs = pattern.removeprefix("!").strip("/").split("/")
        anywhere = globs[0] == "**"
        globs = globs[1:] if anywhere else globs
        starts = range(len(parts)) if anywhere else [0]
        if any(components_match(parts[start : start + len(globs)], globs) for start in starts):
            ignored = not pattern.startswith("!")
    return ignored


def components_match(parts: list[str], globs: list[str]) -> bool:
    return len(parts) == len(globs) and all(map(fnmatch.fnmatchcase, parts, globs))


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return stages((REPO_ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def final(dockerfile: tuple[dict[str, str], list[Stage]]) -> Stage:
    return dockerfile[1][-1]


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_builds_in_stages_on_one_base_image(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, found = dockerfile
    assert len(found) >= 2
    # The venv copied from the builder links to the builder's interpreter, so the final stage needs it too.
    assert len({stage.base for stage in found}) == 1
    assert found[0].base.startswith("python:3.11")


def test_final_stage_copies_only_the_venv_and_installs_no_compilers(final: Stage) -> None:
    copies = final.all("COPY")
    assert copies and all(arguments.startswith("--from=") for arguments in copies)
    assert {tuple(copy_sources(arguments)) for arguments in copies} == {("/opt/venv",)}
    for command in final.all("RUN"):
        assert not COMPILERS.search(command), f"final stage installs a compiler: {command}"


def test_builder_stage_installs_the_project_with_pip(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    builder = dockerfile[1][0]
    assert any(re.search(r"pip install (--no-deps )?\.(\s|$)", command) for command in builder.all("RUN"))


def test_final_stage_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    user = final.last("USER").split(":")[0]
    # Kubernetes' runAsNonRoot can only verify a numeric uid.
    assert user.isdigit() and int(user) != 0


def test_entrypoint_is_tailtune_and_the_default_command_serves_the_api(final: Stage) -> None:
    entrypoint = exec_form(final.last("ENTRYPOINT"))
    command = exec_form(final.last("CMD"))
    assert entrypoint[-1] == "tailtune"
    assert command[0] == "serve" and command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] in final.last("EXPOSE").split()


def test_healthcheck_passes_on_200_and_fails_on_503(final: Stage, run_health_check) -> None:
    check = final.last("HEALTHCHECK")
    probe = exec_form(check[check.index("CMD") + len("CMD") :].strip())
    port = int(exec_form(final.last("CMD"))[-1])
    assert "/healthz" in probe[2]
    assert run_health_check(probe, port, 200) == 0
    assert run_health_check(probe, port, 503) != 0


def test_every_copied_source_exists_and_is_in_the_build_context(
    dockerfile: tuple[dict[str, str], list[Stage]], ignore_patterns: list[str]
) -> None:
    copied = [source for stage in dockerfile[1] for arguments in stage.all("COPY")
              if not arguments.startswith("--from=") for source in copy_sources(arguments)]
    assert copied
    for source in copied:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignored(source.rstrip("/"), ignore_patterns), f"COPY {source} is .dockerignored"


def test_builder_copies_everything_pyproject_packages(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    builder = dockerfile[1][0]
    copied = {source.rstrip("/") for arguments in builder.all("COPY") for source in copy_sources(arguments)}
    included = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in included}
    assert packages <= copied
    assert {"pyproject.toml", project["project"]["readme"]} <= copied


@pytest.mark.parametrize("path", [".venv/bin/python", ".git/HEAD", ".env", "data/cifar-100-python/train",
                                  "trainers/__pycache__/config.cpython-311.pyc", ".pytest_cache/v/x"])
def test_dockerignore_keeps_local_state_out_of_the_context(path: str, ignore_patterns: list[str]) -> None:
    assert dockerignored(path, ignore_patterns)
