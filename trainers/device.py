"""Where and how a run executes: device, autocast and compile choices, with clean CPU fallbacks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from trainers.config import RunOptions, default_decoders
from trainers.errors import UserInputError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: full fp32
    compile: bool
    channels_last: bool
    loader_workers: int = 0  # DataLoader worker processes decoding streamed images (0: in this process)
    loader_timeout_s: float = 300.0  # a worker silent this long fails the run instead of hanging it
    decode_on_device: bool = False  # streamed JPEGs decoded batched on `device` (nvJPEG on CUDA), not in workers
    stage1_processes: int = 1  # >1: stage 1 trained data-parallel (trainers/distributed.py)
    data_roots: tuple[Path, ...] | None = None  # every data folder and file read must lie under one (None: any)
    tf32: bool = False  # TF32 matmuls / convolutions on CUDA (set process-wide by resolve_runtime)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def maybe_compile(self, function: Callable) -> Callable:
        return torch.compile(function) if self.compile else function


def resolve_runtime(options: RunOptions) -> Runtime:
    """bf16 autocast and torch.compile pay off on CUDA; on a 2-core CPU they measured slower, so off there."""
    if options.device == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda asked for, but no CUDA device is visible; use --device auto or cpu")
    use_cuda = options.device == "cuda" or (options.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    autocast = {"auto": torch.bfloat16 if use_cuda else None, "off": None, "bf16": torch.bfloat16}[options.amp]
    compile_model = {"auto": use_cuda, "off": False, "on": True}[options.compile]
    workers = options.loader_workers if options.loader_workers is not None else default_decoders()
    # PyTorch's defaults differ (matmul off, cuDNN on): both follow the option, so "fp32" means fp32 everywhere.
    torch.backends.cuda.matmul.allow_tf32 = options.tf32
    torch.backends.cudnn.allow_tf32 = options.tf32
    return Runtime(device=device, autocast_dtype=autocast, compile=compile_model,
                   channels_last=options.channels_last, loader_workers=workers,
                   loader_timeout_s=options.loader_timeout_s,
                   decode_on_device={"auto": use_cuda, "workers": False, "device": True}[options.decode],
                   stage1_processes=options.stage1_processes, data_roots=options.data_roots,
                   tf32=options.tf32)


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
