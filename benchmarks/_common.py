"""Shared by the benchmark scripts: timing side by side and a synthetic feature bank of a given size."""

from __future__ import annotations

import contextlib
import statistics
import time
import uuid
from collections.abc import Callable, Iterator

import sqlalchemy as sa
import torch

from trainers.features import FeatureBank
from trainers.heads import Head


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def interleaved(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per variant, the variants alternating so machine noise hits each alike."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, function in variants.items():
            times[name].append(timed(function))
    return {name: statistics.median(values) for name, values in times.items()}


def synthetic_bank(samples: int, dim: int, classes: int, views: int, seed: int = 0) -> tuple[FeatureBank, Head,
                                                                                               list[int]]:
    """Features shaped like a CIFAR-100-LT backbone's (N x 512, K classes, exponential counts)."""
    generator = torch.Generator().manual_seed(seed)
    counts = [max(1, round(samples * 0.1 * (0.01 ** (k / (classes - 1))))) for k in range(classes)]
    labels = torch.repeat_interleave(torch.arange(classes), torch.tensor(counts))
    centres = torch.randn(classes, dim, generator=generator)
    train = centres[labels] + torch.randn(views, len(labels), dim, generator=generator)
    held_out_labels = torch.arange(classes).repeat(10)
    held_out = centres[held_out_labels] + torch.randn(len(held_out_labels), dim, generator=generator)
    bank = FeatureBank(train_views=train, train_plain=train[0], train_labels=labels, val=held_out,
                       val_flipped=held_out, val_labels=held_out_labels, test=held_out, test_flipped=held_out,
                       test_labels=held_out_labels, fdr_train=0.0, fdr_test=0.0)
    head = Head(0.05 * torch.randn(classes, dim, generator=generator), torch.zeros(classes))
    return bank, head, counts


ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _admin(statement: str) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block, hence AUTOCOMMIT.
    engine = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as connection:
        connection.exec_driver_sql(statement)
    engine.dispose()


@contextlib.contextmanager
def scratch_postgres_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL (127.0.0.1:5432, trust auth), dropped afterwards; yields its URL."""
    name = f"tailtune_bench_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

