"""`tailtune study ...`: create, follow and steer studies, on a database (--storage) or an API (--api).

    tailtune study create wb-digits --dataset digits-lt --method wb --n-trials 8 --storage sqlite:///t.db
    tailtune worker --study wb-digits --storage sqlite:///t.db
    tailtune study best wb-digits --storage sqlite:///t.db
    TAILTUNE_API_TOKEN=... tailtune study watch wb-digits --api https://tailtune.example.org
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from studies.definition.confirmation import ConfirmedAnswer, answer_rows, parse_confirm
from studies.definition.records import MAX_PAGE_SIZE, PAGE_SIZE, Page, SplitValues, StudyRecord, StudyState, TrialRecord
from studies.definition.spec import StudySpec, parse_spec
from studies.store.lifecycle import QueuedTrial
from tailtune.commands.access import ApiOption, Studies, open_studies
from tailtune.commands.common import StorageOption, default_of, given, parse_assignments, stderr, user_errors
from trainers.errors import UserInputError
from trainers.results import SPLITS

app = typer.Typer(no_args_is_help=True, help="Create, run and inspect studies (Optuna studies with budgets).")
console = Console()

NameArgument = Annotated[str, typer.Argument(help="study name")]
Result = TypeVar("Result", bound=BaseModel)
JsonOption = Annotated[bool, typer.Option("--json", help="print the result as one JSON object")]
LimitOption = Annotated[int, typer.Option(min=1, max=MAX_PAGE_SIZE, help="items per page")]


@app.command()
def create(
    name: NameArgument,
    n_trials: Annotated[int | None, typer.Option(help="budget: trials to finish (COMPLETE, PRUNED)")] = None,
    storage: StorageOption = None,
    dataset: Annotated[str | None, typer.Option(help="digits-lt | cifar10-lt | ... | folder:PATH "
                                                     "\\[default: digits-lt, or the preset's]")] = None,
    method: Annotated[str | None, typer.Option(help="wb | tau-norm | los | ewb "
                                                    f"{default_of(StudySpec, 'method')}, or the preset's")] = None,
    sampler: Annotated[str | None, typer.Option(help="tpe | gp | random | grid "
                                                     f"{default_of(StudySpec, 'sampler')}")] = None,
    pruner: Annotated[str | None, typer.Option(help="auto | none | median | successive-halving | hyperband "
                                                    f"{default_of(StudySpec, 'pruner')} (auto: successive halving "
                                                    "when stage 1 is searched)")] = None,
    objective: Annotated[list[str] | None, typer.Option(
        help=f"val split to maximise (repeatable): {' | '.join(SPLITS)} {default_of(StudySpec, 'objectives')}")
                         ] = None,
    seed: Annotated[int | None, typer.Option(help=default_of(StudySpec, "seed"))] = None,
    preset: Annotated[str | None, typer.Option(help="a paper recipe as the base configuration")] = None,
    fix: Annotated[list[str] | None, typer.Option(help="config field fixed for every trial, e.g. "
                                                       "stage1.epochs=5 (repeatable)")] = None,
    space: Annotated[list[str] | None, typer.Option(help="searched range: name=low:high[:log] or name=a,b,c "
                                                         "(repeatable)")] = None,
    data_root: Annotated[Path | None, typer.Option(help="directory holding the data set")] = None,
    imbalance_factor: Annotated[float | None, typer.Option(help="n_max / n_min (>= 1)")] = None,
    image_size: Annotated[int | None, typer.Option(help="resize images to this side length")] = None,
    confirm: Annotated[str | None, typer.Option(help="K:S: when the budget is spent, train the top K configurations "
                                                     "and the recipe with S seeds in all [default: 3:3]")] = None,
    no_confirm: Annotated[bool, typer.Option("--no-confirm", help="answer with the best single trial, "
                                                                  "unconfirmed")] = False,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a study; nothing is written when the spec is invalid."""
    with user_errors():
        spec = parse_spec(given(
            name=name, n_trials=n_trials, dataset=dataset, method=method, sampler=sampler, pruner=pruner,
            objectives=objective or None, seed=seed, preset=preset, image_size=image_size,
            data_root=str(data_root) if data_root else None, imbalance_factor=imbalance_factor,
            fixed={key: parse_scalar(value) for key, value in parse_assignments(fix or []).items()},
            search_space=parse_space(space or [])) | confirm_payload(confirm, no_confirm))
        studies = open_studies(storage, api)
        record = studies.get_study(studies.create_study(spec).id)
    if as_json:
        _echo_json(record)
        return
    typer.echo(f"created study {record.name!r} (id {record.id}): {record.method} on {record.dataset}, "
               f"{record.n_trials} trials; run it with `tailtune worker --study {record.name}`")
    typer.echo(spec.confirm.cost_line(spec.n_trials) if spec.confirm else "no confirmation over seeds (--no-confirm)")


def confirm_payload(confirm: str | None, no_confirm: bool) -> dict[str, Any]:
    """The spec's `confirm` from --confirm K:S / --no-confirm; empty for the spec's default."""
    if confirm is not None and no_confirm:
        raise UserInputError("give --confirm K:S or --no-confirm, not both")
    if no_confirm:
        return {"confirm": None}
    return {} if confirm is None else {"confirm": parse_confirm(confirm).model_dump()}


@app.command()
def status(name: NameArgument, storage: StorageOption = None, api: ApiOption = None,
           as_json: JsonOption = False) -> None:
    """Trials per state and the budget."""
    with user_errors():
        record = open_studies(storage, api).get_study_by_name(name)
    if as_json:
        _echo_json(record)
        return
    _print_status(record)


@app.command()
def best(name: NameArgument, storage: StorageOption = None, api: ApiOption = None,
         as_json: JsonOption = False) -> None:
    """The best trial: its params and its val/test accuracy per split."""
    with user_errors():
        record = open_studies(storage, api).get_study_by_name(name)
        if record.best_trial_number is None:
            raise UserInputError(f"study {name!r} has no COMPLETE trial yet; run a worker: "
                                 f"tailtune worker --study {name}")
    if as_json:
        typer.echo(record.model_dump_json(include={"name", "best_trial_number", "best_values", "best_params",
                                                    "best_val", "best_test", "recipe", "baseline", "walls",
                                                    "confirmed"}, indent=2))
        return
    console.print(f"best trial of {record.name}: #{record.best_trial_number}, values {record.best_values}")
    for key, value in (record.best_params or {}).items():
        console.print(f"  {key} = {value}")
    console.print(split_table(record))
    for wall in record.walls:
        console.print(wall.text, markup=False, soft_wrap=True)  # one line: its --space option is copied whole
    if record.confirmed is not None:
        console.print(confirmed_table(record.confirmed))
        console.print(record.confirmed.verdict)


@app.command("list")
def list_(storage: StorageOption = None, api: ApiOption = None,
          state: Annotated[StudyState | None, typer.Option(help="active | stopped | done")] = None,
          offset: Annotated[int, typer.Option(min=0)] = 0, limit: LimitOption = PAGE_SIZE,
          as_json: JsonOption = False) -> None:
    """Studies with their state, budget and best val accuracy."""
    with user_errors():
        page = open_studies(storage, api).list_studies(state=state, offset=offset, limit=limit)
    if as_json:
        _echo_json(page)
        return
    table = Table(title=f"studies {page.offset + 1}-{page.offset + len(page.items)} of {page.total}")
    for column in ("id", "name", "state", "method", "dataset", "finished", "best val All"):
        table.add_column(column)
    for record in page.items:
        best_all = (record.best_val or {}).get("all")
        table.add_row(str(record.id), record.name, record.state, record.method, record.dataset,
                      f"{record.counts.finished}/{record.n_trials}", f"{best_all:.2f}" if best_all is not None else "-")
    console.print(table)


@app.command()
def trials(name: NameArgument, storage: StorageOption = None, api: ApiOption = None,
           order: Annotated[Literal["number", "value"], typer.Option(help="number | value (best first)")] = "number",
           offset: Annotated[int, typer.Option(min=0)] = 0, limit: LimitOption = PAGE_SIZE,
           as_csv: Annotated[bool, typer.Option("--csv", help="every trial as CSV (params, per-split val/test, "
                                                              "state, duration)")] = False,
           as_json: JsonOption = False) -> None:
    """A page of the study's trials with per-split accuracy, or all of them as CSV."""
    with user_errors():
        studies = open_studies(storage, api)
        study_id = studies.get_study_by_name(name).id
        if as_csv:
            typer.echo(studies.trials_csv(study_id), nl=False)
            return
        page = studies.list_trials(study_id, offset=offset, limit=limit, order=order)
    if as_json:
        _echo_json(page)
        return
    console.print(_trial_table(name, page))


@app.command()
def stop(name: NameArgument, storage: StorageOption = None, api: ApiOption = None,
         as_json: JsonOption = False) -> None:
    """Claim no more trials; trials already running finish."""
    _change(name, storage, api, as_json, lambda studies, study_id: studies.stop_study(study_id),
            lambda record: f"study {record.name!r} is {record.state}; running trials: {record.counts.running}")


@app.command()
def resume(name: NameArgument, storage: StorageOption = None, api: ApiOption = None,
           as_json: JsonOption = False) -> None:
    """Let a stopped study take trials again."""
    _change(name, storage, api, as_json, lambda studies, study_id: studies.resume_study(study_id),
            lambda record: f"study {record.name!r} is {record.state}; {record.counts.finished}/{record.n_trials} "
                           "finished")


@app.command()
def budget(name: NameArgument,
           n_trials: Annotated[int, typer.Argument(help="the new budget; not below the trials already finished")],
           storage: StorageOption = None, api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Raise or lower the study's n_trials; a done study with a raised budget runs again."""
    _change(name, storage, api, as_json, lambda studies, study_id: studies.set_budget(study_id, n_trials),
            lambda record: f"study {record.name!r}: budget {record.n_trials} trials, {record.counts.finished} "
                           f"finished; {record.state}")


@app.command()
def queue(name: NameArgument,
          param: Annotated[list[str], typer.Option(help="searched parameter, e.g. stage2.weight_decay=0.1 "
                                                        "(repeatable; those left out are sampled)")],
          storage: StorageOption = None, api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Queue a configuration: the next worker runs it before sampling new ones (the same params queue once)."""
    def queued_line(queued: QueuedTrial) -> str:
        verb = "queued as" if queued.created else "already queued as"
        return f"{verb} trial #{queued.number} of {name!r}: {queued.params}"

    _change(name, storage, api, as_json,
            lambda studies, study_id: studies.queue_trial(study_id, {
                key: parse_scalar(value) for key, value in parse_assignments(param).items()}),
            queued_line)


def _change(name: str, storage: str | None, api: str | None, as_json: bool,
            change: Callable[[Studies, int], Result], line: Callable[[Result], str]) -> None:
    """Applies `change` to the named study; prints its result as JSON or as `line` says."""
    with user_errors():
        studies = open_studies(storage, api)
        result = change(studies, studies.get_study_by_name(name).id)
    typer.echo(result.model_dump_json(indent=2) if as_json else line(result))


@app.command()
def watch(name: NameArgument, storage: StorageOption = None, api: ApiOption = None,
          interval: Annotated[float, typer.Option(min=0.1, help="seconds between polls")] = 2.0,
          as_json: JsonOption = False) -> None:
    """Follow a study live (progress bar, best so far per split) until it is done or stopped."""
    with user_errors():
        studies = open_studies(storage, api)
        record = studies.get_study_by_name(name)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        # On stderr: stdout carries only the final status (or its JSON), for scripts.
        with Progress(*columns, console=stderr, transient=as_json) as progress:
            task = progress.add_task(name, total=record.n_trials)
            while True:
                progress.update(task, completed=record.counts.finished, total=record.n_trials,
                                description=f"{name}: best val {_best_line(record.best_val)}")
                if record.state != "active":
                    break
                time.sleep(interval)
                record = studies.get_study(record.id)
    if as_json:
        _echo_json(record)
        return
    _print_status(record)
    if record.best_trial_number is not None:
        console.print(split_table(record))


@app.command()
def delete(name: NameArgument, storage: StorageOption = None, api: ApiOption = None,
           force: Annotated[bool, typer.Option(help="delete even while trials run")] = False,
           as_json: JsonOption = False) -> None:
    """Delete the study and all its trials."""
    with user_errors():
        studies = open_studies(storage, api)
        studies.delete_study(studies.get_study_by_name(name).id, force=force)
    typer.echo(json.dumps({"deleted": name}) if as_json else f"deleted study {name!r}")


def _print_status(record: StudyRecord) -> None:
    counts = record.counts
    console.print(f"study {record.name} (id {record.id}): {record.state}, {record.method} on "
                  f"{record.dataset}")
    console.print(f"budget: {counts.finished}/{record.n_trials} finished  |  complete {counts.complete}, "
                  f"pruned {counts.pruned}, running {counts.running}, waiting {counts.waiting}, "
                  f"fail {counts.fail}")
    if record.stop_reason:
        console.print(f"stopped: {record.stop_reason}")


def _echo_json(result: BaseModel) -> None:
    typer.echo(result.model_dump_json(indent=2))


def _best_line(values: SplitValues | None) -> str:
    if not values:
        return "-"
    return "  ".join(f"{key} {values[key]:.1f}" for key in SPLITS
                     if values.get(key) is not None)


def _trial_table(name: str, page: Page[TrialRecord]) -> Table:
    table = Table(title=f"trials of {name}: {page.offset + 1}-{page.offset + len(page.items)} of {page.total}")
    for column in ("#", "state", "val All", "val Many", "val Medium", "val Few", "test All", "s"):
        table.add_column(column, justify="right")
    for trial in page.items:
        duration = f"{trial.duration_s:.1f}" if trial.duration_s is not None else "-"
        table.add_row(str(trial.number), trial.state, *_cells(trial.val), _cells(trial.test)[0], duration)
    return table


def split_table(record: StudyRecord) -> Table:
    """The best trial's val/test accuracy per split; with the recipe's trial finished, recipe vs best: the
    recipe's (the preset's values, else tailtune's defaults, run as trial 0) and best - recipe in points; with
    the study's baseline fitted, baseline vs best likewise (or why it was skipped)."""
    recipe, baseline = record.recipe, record.baseline
    captions = [] if recipe is None else [f"recipe: trial #{recipe.trial_number} (the preset's values, else "
                                          "tailtune's defaults); best - recipe in points"]
    if record.best_val_coverage is not None:
        captions.append(record.best_val_coverage.text("val"))
    if baseline is not None:
        captions.append(f"baseline: {baseline.model}" if baseline.state == "done"
                        else f"baseline {baseline.state}" + (f": {baseline.reason}" if baseline.reason else ""))
    table = Table(title="accuracy % (per-class mean)", caption="\n".join(captions) or None)
    table.add_column("")
    table.add_column("split")
    for column in ("All", "Many", "Medium", "Few"):
        table.add_column(column, justify="right")
    rows = [("best", "val", _cells(record.best_val)), ("", "test", _cells(record.best_test))]
    if recipe is not None:
        rows += [("recipe", "val", _cells(recipe.val)), ("", "test", _cells(recipe.test)),
                 ("best - recipe", "val", _cells(recipe.best_minus_recipe_val, signed=True)),
                 ("", "test", _cells(recipe.best_minus_recipe_test, signed=True))]
    if baseline is not None and baseline.state == "done":
        rows += [("baseline", "val", _cells(baseline.val)), ("", "test", _cells(baseline.test)),
                 ("best - baseline", "val", _cells(baseline.best_minus_baseline_val, signed=True)),
                 ("", "test", _cells(baseline.best_minus_baseline_test, signed=True))]
    for trial, split, cells in rows:
        table.add_row(trial, split, *cells, end_section=split == "test")
    return table


def confirmed_table(answer: ConfirmedAnswer) -> Table:
    """The confirmed best and the recipe over seeds (mean ± std, 95 % t interval) and best - recipe by seed."""
    progress = "" if answer.complete else f" (so far: {answer.runs_finished}/{answer.runs_planned} runs)"
    table = Table(title=f"confirmed over seeds{progress}: mean ± std [95 % t interval], %",
                  caption=f"best: the configuration with the best mean val {answer.objective} over its seeds")
    for column in ("", "split", "All", "Many", "Medium", "Few"):
        table.add_column(column, justify="left" if column in ("", "split") else "right")
    for label, part, cells in answer_rows(answer):
        table.add_row(label if part == "val" else "", part, *cells, end_section=part == "test")
    return table


def _cells(values: SplitValues | None, signed: bool = False) -> list[str]:
    values = values or {}
    form = "{:+.2f}" if signed else "{:.2f}"
    return [form.format(values[key]) if values.get(key) is not None else "–"  # an empty split: no accuracy
            for key in SPLITS]


def parse_space(items: list[str]) -> dict[str, dict[str, Any]]:
    """`name=low:high[:log]` -> a float range; `name=a,b,c` -> choices."""
    space = {}
    for item in items:
        name, sep, body = item.partition("=")
        if not sep or not name.strip() or not body.strip():
            raise UserInputError(f"expected --space name=low:high[:log] or name=a,b,c, got {item!r}")
        space[name.strip()] = _float_range(item, body) if ":" in body and "," not in body else {
            "type": "categorical", "choices": [parse_scalar(value) for value in body.split(",")]}
    return space


def _float_range(item: str, body: str) -> dict[str, Any]:
    parts = [part.strip() for part in body.split(":")]
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise UserInputError(f"expected --space name=low:high or name=low:high:log, got {item!r}")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise UserInputError(f"--space {item!r}: low and high must be numbers") from None
    return {"type": "float", "low": low, "high": high, "log": len(parts) == 3}


def parse_scalar(text: str) -> bool | int | float | str:
    """A command-line value as the type it reads as: true/false, an integer, a number, else text."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text
