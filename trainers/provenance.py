"""Where a number came from: code revision, library versions and device, stored with every result."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from trainers.device import Runtime
from trainers.results import Provenance


@functools.cache
def git_revision() -> str | None:
    try:
        completed = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                   text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None


@functools.cache
def trainer_code_version() -> str:
    """A hash of the trainer's source: cached backbones from other trainer code are never reused."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(source.relative_to(Path(__file__).parent).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def tailtune_version() -> str:
    try:
        return version("tailtune")
    except PackageNotFoundError:
        return "unknown"


def provenance(runtime: Runtime) -> Provenance:
    device = runtime.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return Provenance(device=name, torch_version=torch.__version__, cuda_version=torch.version.cuda,
                      git_revision=git_revision(), tailtune_version=tailtune_version(), tf32=runtime.tf32)
