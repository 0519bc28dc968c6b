"""Shared by the benchmark scripts: side-by-side timing, tables, thread settings and a scratch PostgreSQL
database. Imports no torch: worker processes of claim_throughput.py load this module."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence

from tests.postgres import local_or_throwaway
from trainers.config import Stage1Config


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def interleaved(variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 0) -> dict[str, float]:
    """Median seconds per variant over `repeats` rounds; within a round the variants run one after the other,
    so a burst of load from the machine's other work hits each of them alike. `warmup` rounds are not timed."""
    for _ in range(warmup):
        for function in variants.values():
            function()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, function in variants.items():
            times[name].append(timed(function))
    return {name: statistics.median(values) for name, values in times.items()}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, floats to 3 significant
    decimals unless already formatted as strings."""
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        first, *rest = values
        return "  ".join([first.ljust(widths[0]), *(v.rjust(w) for v, w in zip(rest, widths[1:], strict=True))])

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def add_stage1_epochs_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage1-epochs", type=int, default=Stage1Config().epochs,
                        help="stage-1 epochs (default: tailtune's; the papers' presets have 200-320)")


def seeded_benchmark_args(doc: str, seeds: int,
                          more_flags: Callable[[argparse.ArgumentParser], object] | None = None) -> argparse.Namespace:
    """--seeds, --stage1-epochs and --threads (applied), for a benchmark that repeats itself over seeds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=seeds)
    add_stage1_epochs_flag(parser)
    add_threads_flag(parser)
    if more_flags is not None:
        more_flags(parser)
    args = parser.parse_args()
    apply_threads(args.threads)
    return args


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's own choice, one per core)")


def apply_threads(threads: int | None) -> int:
    """Sets torch's thread count when asked; returns the count in use, for the table's heading."""
    import torch  # here, not at the top: see the module docstring

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


@contextlib.contextmanager
def scratch_postgres_database() -> Iterator[str]:
    """A fresh database, dropped afterwards, on the local PostgreSQL (127.0.0.1:5432, trust auth) when it answers,
    else on a throwaway server for the run: the tests' own logic (tests/postgres.py); yields its URL."""
    with local_or_throwaway() as server, server.database(prefix="tailtune_bench") as url:
        yield url
