"""Data-parallel stage 1: one worker trains one backbone on several GPUs (or CPU processes) with DDP.

The worker spawns `RunOptions.stage1_processes` processes. Each one trains the same model, wrapped in
DistributedDataParallel, on its shard of the train split: a seeded permutation dealt out like
DistributedSampler's (padded so every rank runs the same number of steps; a rank that ran one more step would
wait forever in its gradient all-reduce). The recipe's batch size is the global one, split evenly over the
ranks, so the learning rate keeps its meaning. Backend: nccl on CUDA (rank r on GPU r), gloo on the CPU. The
ranks' final weights and buffers are identical (DDP averages gradients and broadcasts rank 0's buffers), and the
caller continues from them in one process: feature bank, stage-1 cache and stage 2 are unchanged.
"""

from __future__ import annotations

import dataclasses
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from trainers.backbone import build_backbone_model, stage1_loss
from trainers.config import ExperimentConfig
from trainers.data.types import FileSplit, ImageSplit, LTDataset
from trainers.device import Runtime
from trainers.errors import UserInputError
from trainers.loop import LossFn, SGDSettings, fit

State = dict[str, torch.Tensor]


class FeaturesAndLogits(nn.Module):
    """The model's forward as the loop needs it, (features, logits), in one module DDP can wrap: DDP only
    synchronises gradients of what runs through its own forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.features(images)
        return features, self.model.classifier(features)


def train_stage1_ranks(config: ExperimentConfig, data: LTDataset, runtime: Runtime) -> list[State]:
    """Stage 1 trained by `runtime.stage1_processes` DDP processes; every rank's final state dict, in rank order
    (on the CPU), so the caller can check they agree before it uses one."""
    processes = runtime.stage1_processes
    if config.stage1.batch_size % processes:
        raise UserInputError(f"stage1.batch_size {config.stage1.batch_size} must divide evenly over "
                             f"{processes} stage-1 processes")
    if runtime.device.type == "cuda" and torch.cuda.device_count() < processes:
        raise UserInputError(f"{processes} stage-1 processes asked for, but only {torch.cuda.device_count()} "
                             "GPUs are visible")
    with tempfile.TemporaryDirectory(prefix="tailtune-ddp-") as folder:
        mp.spawn(_rank_main, args=(processes, _free_port(), config, data, runtime, Path(folder)), nprocs=processes)
        return [torch.load(Path(folder) / f"rank{rank}.pt", weights_only=True) for rank in range(processes)]


def agreed_state(states: list[State]) -> State:
    """Rank 0's state, after checking every rank ended with exactly the same weights and buffers."""
    first, *others = states
    for rank, state in enumerate(others, start=1):
        if state.keys() != first.keys() or any(not torch.equal(state[k], first[k]) for k in first):
            raise RuntimeError(f"data-parallel stage 1: rank {rank}'s weights differ from rank 0's")
    return first


def shard(data: LTDataset, rank: int, processes: int, seed: int) -> LTDataset:
    """The data set with rank `rank`'s share of the train split (val and test stay whole)."""
    split = data.train
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    order = torch.cat([order, order[:(-len(split)) % processes]])  # pad to a multiple of `processes`
    index = order[rank::processes]
    if isinstance(split, ImageSplit):
        train: ImageSplit | FileSplit = ImageSplit(split.images[index], split.labels[index])
    else:
        train = FileSplit([split.paths[i] for i in index.tolist()], split.labels[index], split.roots)
    return dataclasses.replace(data, train=train)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _average_buffers(model: nn.Module, processes: int) -> None:
    # DDP broadcasts rank 0's buffers before each forward, so the last step's BatchNorm statistics still differ
    # between ranks; the mean over every rank's shard is the better estimate, and the same on all of them.
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= processes
        else:
            dist.broadcast(buffer, src=0)


def _rank_main(rank: int, processes: int, port: int, config: ExperimentConfig, data: LTDataset, runtime: Runtime,
               folder: Path) -> None:
    if runtime.device.type == "cuda":
        torch.cuda.set_device(rank)
        runtime = dataclasses.replace(runtime, device=torch.device("cuda", rank))
    dist.init_process_group("nccl" if runtime.device.type == "cuda" else "gloo",
                            init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=processes)
    try:
        torch.manual_seed(config.seed)  # the same initial weights as a one-process run
        model = build_backbone_model(config, data, runtime)
        replica = DistributedDataParallel(FeaturesAndLogits(model),
                                          device_ids=[rank] if runtime.device.type == "cuda" else None)
        stage1 = config.stage1
        loss: LossFn = stage1_loss(config)
        sgd = SGDSettings(stage1.epochs, stage1.lr, stage1.momentum, stage1.weight_decay,
                          stage1.batch_size // processes)
        # Each rank draws its own shuffles and augmentations (seed + rank) from its own shard.
        fit(model, [p for p in model.parameters() if p.requires_grad], shard(data, rank, processes, config.seed),
            loss, sgd, runtime, seed=config.seed + rank, stage="stage 1", forward=replica)
        _average_buffers(model, processes)
        torch.save({name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
                   folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
