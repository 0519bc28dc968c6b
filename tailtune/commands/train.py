"""`tailtune train`: one configuration, stage 1 then stage 2, printed as a per-split table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tailtune.commands.common import default_of, given, parse_assignments, user_errors
from trainers.config import DataConfig, ExperimentConfig, Method, RunOptions, with_fields
from trainers.errors import UserInputError
from trainers.presets import PRESETS, method_defaults, paper_comparison
from trainers.results import SPLITS, ExperimentResult, SplitAccuracy

console = Console()


def train(
    dataset: Annotated[str | None, typer.Option(help="digits-lt | cifar10-lt | cifar100-lt | imagenet-lt | "
                                                     "inat2018 | folder:PATH \\[default: digits-lt, or the preset's]")
                       ] = None,
    method: Annotated[str | None, typer.Option(help="wb | tau-norm | los | ewb "
                                                    f"{default_of(ExperimentConfig, 'method')}, or the preset's")
                      ] = None,
    preset: Annotated[str | None, typer.Option(help=f"paper recipe: {', '.join(PRESETS)}")] = None,
    data_root: Annotated[Path | None, typer.Option(help="directory holding the data set")] = None,
    imbalance_factor: Annotated[float | None, typer.Option(help="n_max / n_min (>= 1)")] = None,
    image_size: Annotated[int | None, typer.Option(help="resize images to this side length")] = None,
    download: Annotated[bool | None, typer.Option(help="let torchvision download CIFAR "
                                                       f"{default_of(DataConfig, 'download')}")] = None,
    epochs: Annotated[int | None, typer.Option(help="stage-1 epochs")] = None,
    seed: Annotated[int | None, typer.Option(help=default_of(ExperimentConfig, "seed"))] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="any config field, e.g. stage2.tau=1.5")] = None,
    device: Annotated[str | None, typer.Option(help=f"auto | cpu | cuda {default_of(RunOptions, 'device')}")
                      ] = None,
    amp: Annotated[str | None, typer.Option(help="off (fp32, the papers' precision) | auto (bf16 on CUDA) | bf16 "
                                                 f"{default_of(RunOptions, 'amp')}")] = None,
    checkpoint_dir: Annotated[Path | None, typer.Option(help="write stage-1 and stage-2 weights here")] = None,
    stage1_processes: Annotated[int | None, typer.Option(
        help="processes (one per GPU) training stage 1 data-parallel with DDP; 1: this process "
             f"{default_of(RunOptions, 'stage1_processes')}")] = None,
    tf32: Annotated[bool | None, typer.Option(help="allow TF32 in CUDA matmuls and convolutions (off: true fp32) "
                                                  f"{default_of(RunOptions, 'tf32')}")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one JSON object")] = False,
) -> None:
    """Train one configuration: stage 1, then stage 2 (or the one-stage method), then a per-split table."""
    with user_errors():
        config = _config(dataset, method, preset, data_root, imbalance_factor, image_size, download, epochs, seed,
                         set_ or [])
        options = _run_options(device, amp, checkpoint_dir, stage1_processes, tf32, progress=not as_json)
        result = _run(config, options)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        console.print(result_table(result))
        console.print(data_line(result))
        console.print(f"val: {result.val_coverage.text('val')}")
        if preset is not None:
            console.print(paper_comparison(preset, result.config))


def _config(dataset: str | None, method: str | None, preset: str | None, data_root: Path | None,
            imbalance_factor: float | None, image_size: int | None, download: bool | None, epochs: int | None,
            seed: int | None, assignments: list[str]) -> ExperimentConfig:
    if preset is not None and preset not in PRESETS:
        raise UserInputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if method is not None and method not in Method.__args__:
        raise UserInputError(f"unknown method {method!r}; choose one of {', '.join(Method.__args__)}")
    if preset is not None and method is not None and method != PRESETS[preset].config.method:
        raise UserInputError(f"preset {preset!r} is for method {PRESETS[preset].config.method!r}; drop --method")
    default_method = ExperimentConfig.model_fields["method"].default
    base = PRESETS[preset].config if preset else method_defaults(method or default_method, dataset)
    fields = given(**{"seed": seed, "data.download": download, "data.name": dataset,
                      "data.root": str(data_root) if data_root else None, "data.imbalance_factor": imbalance_factor,
                      "data.image_size": image_size, "stage1.epochs": epochs})
    fields.update(parse_assignments(assignments))
    try:
        return with_fields(base, fields)
    except ValueError as error:
        raise UserInputError(str(error)) from None


def _run_options(device: str | None, amp: str | None, checkpoint_dir: Path | None, stage1_processes: int | None,
                 tf32: bool | None, progress: bool) -> RunOptions:
    try:
        return RunOptions(**given(device=device, amp=amp, checkpoint_dir=checkpoint_dir,
                                  stage1_processes=stage1_processes, tf32=tf32), progress=progress)
    except ValueError:
        raise UserInputError(f"--device must be auto, cpu or cuda, --amp off, auto or bf16 and --stage1-processes "
                             f"at least 1; got --device {device!r}, --amp {amp!r}, --stage1-processes "
                             f"{stage1_processes}") from None


def _run(config: ExperimentConfig, options: RunOptions) -> ExperimentResult:
    from trainers.device import resolve_runtime
    from trainers.experiment import run_experiment

    with _EpochProgress(enabled=options.progress) as progress:
        return run_experiment(config, resolve_runtime(options), progress.on_epoch, options.checkpoint_dir)


class _EpochProgress:
    """A progress bar per training stage, fed by the trainer's on_epoch callback."""

    def __init__(self, enabled: bool) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("val All {task.fields[val]:5.1f}%"), TimeElapsedColumn(),
                                  console=Console(stderr=True), disable=not enabled, transient=False)
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> _EpochProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def on_epoch(self, stage: str, epoch: int, epochs: int, val_all: Callable[[], float]) -> None:
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=epochs, val=0.0)
        self._progress.update(self._tasks[stage], completed=epoch, val=val_all())


def _cells(split: SplitAccuracy) -> list[str]:
    # An empty split (no class in it) has no accuracy: "–", never a number.
    return [f"{value:.2f}" if value is not None else "–" for value in split.model_dump(include=set(SPLITS)).values()]


def data_line(result: ExperimentResult) -> str:
    """The pipeline and the augmentation the run trained with (the data set's defaults resolved)."""
    data = result.data
    size = f"{data.image_size} px" + (f" (eval: resize {data.eval_resize}, centre crop)" if data.eval_resize else "")
    estimate = f", {data.estimated_decoded_gb:g} GB decoded" if data.estimated_decoded_gb is not None else ""
    return (f"data: {data.train_images} train images at {size}, {data.pipeline}{estimate}; augmentation: "
            f"random-resized crop {_on(data.random_resized_crop)}, crop padding {data.crop_padding}, "
            f"flip {_on(data.flip)}; features {data.feature_precision}; TF32 {_on(result.provenance.tf32)}")


def _on(value: bool) -> str:
    return "on" if value else "off"


def result_table(result: ExperimentResult) -> Table:
    rule = result.split_rule
    table = Table(title=f"{result.config.method} on {result.config.data.name}: per-class mean accuracy, %",
                  caption=f"{sum(result.class_counts):,} train images in {len(result.class_counts)} classes; "
                          f"Many: n > {rule.many_above:.4g} train images ({len(rule.many_classes)} classes), "
                          f"Medium ({len(rule.medium_classes)} classes), "
                          f"Few: n < {rule.few_below:.4g} ({len(rule.few_classes)} classes); rule: {rule.rule}")
    table.add_column("stage")
    table.add_column("split")
    for column in ("All", "Many", "Medium", "Few"):
        table.add_column(column, justify="right")
    for name, stage in (("stage 1", result.stage1), ("stage 2", result.stage2)):
        table.add_row(name, "val", *_cells(stage.val))
        table.add_row("", "test", *_cells(stage.test), end_section=True)
    return table
