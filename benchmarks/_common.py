"""Shared by the benchmark scripts: side-by-side timing, tables, thread settings and a scratch PostgreSQL
database. Imports no torch: worker processes of claim_throughput.py load this module."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

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


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
               tiny: Mapping[str, object]) -> argparse.Namespace:
    """The script's flags, plus `--tiny`, which makes `tiny` their defaults: a run of seconds that the suite makes
    (tests/benchmarks/test_scripts.py), so a change that breaks a script fails a test. Flags given still win."""
    sizes = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in tiny.items())
    parser.add_argument("--tiny", action="store_true", help=f"seconds-long sizes for the test suite: {sizes}")
    if "--tiny" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**tiny)
    return parser.parse_args(argv)


def add_stage1_epochs_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage1-epochs", type=int, default=Stage1Config().epochs,
                        help="stage-1 epochs (default: tailtune's; the papers' presets have 200-320)")


def seeded_benchmark_args(doc: str, seeds: int, argv: Sequence[str] | None,
                          more_flags: Callable[[argparse.ArgumentParser], object] | None = None) -> argparse.Namespace:
    """--seeds, --stage1-epochs and --threads (applied), for a benchmark that repeats itself over seeds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=seeds)
    add_stage1_epochs_flag(parser)
    add_threads_flag(parser)
    if more_flags is not None:
        more_flags(parser)
    args = parse_args(parser, argv, tiny={"seeds": 1, "stage1_epochs": 1, "threads": 1})
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
