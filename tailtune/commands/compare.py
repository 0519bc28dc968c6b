"""`tailtune compare ...`: the methods side by side on one data set, as the papers print them.

    tailtune compare create acc --dataset digits-lt --n-trials 8 --seeds 3 --storage postgresql://...
    tailtune worker --storage postgresql://...          # no --study: serves every active study
    tailtune compare show acc --storage postgresql://... [--json] [--out DIR]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from studies.definition.comparison import METHODS, ComparisonSpec
from studies.definition.spec import parsed
from tailtune.commands.access import ApiOption, open_studies
from tailtune.commands.common import StorageOption, parse_assignments, user_errors
from tailtune.commands.study import JsonOption, parse_scalar

app = typer.Typer(no_args_is_help=True, help="Compare the methods on one data set: one study per method, "
                                             "confirmed over seeds, in one paper-style table.")
NameArgument = Annotated[str, typer.Argument(help="comparison name")]


@app.command()
def create(
    name: NameArgument,
    n_trials: Annotated[int, typer.Option(help="each method's search budget (trials)")],
    dataset: Annotated[str, typer.Option(help="digits-lt | cifar10-lt | ... | folder:PATH")] = "digits-lt",
    methods: Annotated[str, typer.Option(help="comma-separated, of " + ",".join(METHODS))] = ",".join(METHODS),
    seeds: Annotated[int | None, typer.Option(help="seeds per confirmed configuration [default: 3]")] = None,
    top_k: Annotated[int | None, typer.Option(help="configurations per method confirmed [default: 3]")] = None,
    fix: Annotated[list[str] | None, typer.Option(help="config field fixed in every study whose method has it, "
                                                       "e.g. stage1.epochs=5 (repeatable)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    data_root: Annotated[Path | None, typer.Option(help="directory holding the data set")] = None,
    storage: StorageOption = None,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create the comparison's studies; returns at once (workers run them)."""
    with user_errors():
        payload: dict[str, Any] = {
            "name": name, "dataset": dataset, "n_trials": n_trials, "seed": seed,
            "methods": [method.strip() for method in methods.split(",") if method.strip()],
            "data_root": str(data_root) if data_root else None,
            "fixed": {key: parse_scalar(value) for key, value in parse_assignments(fix or []).items()}}
        payload |= {key: value for key, value in (("seeds", seeds), ("top_k", top_k)) if value is not None}
        spec = parsed(ComparisonSpec, payload, "comparison")
        record = open_studies(storage, api).create_comparison(spec)
    if as_json:
        typer.echo(record.model_dump_json(indent=2))
        return
    typer.echo(f"created comparison {record.name!r} (id {record.id}): {', '.join(spec.methods)} on {spec.dataset}")
    typer.echo(_cost(spec))
    typer.echo("run it with `tailtune worker` (no --study: workers serve every active study); then "
               f"`tailtune compare show {record.name}`")


def _cost(spec: ComparisonSpec) -> str:
    confirm = spec.method_spec(spec.methods[0], {}).confirm
    assert confirm is not None
    shared = "".join(f"stage 1 searched once for {', '.join(methods)}: {spec.n_trials} trials; "
                     for methods in spec.stage1_studies().values())
    return (f"cost: {shared}{spec.n_trials} search trials per method; per method, "
            f"{confirm.cost_line(spec.n_trials).removeprefix('confirmation: ')}")


@app.command()
def show(name: NameArgument, storage: StorageOption = None, api: ApiOption = None, as_json: JsonOption = False,
         out: Annotated[Path | None, typer.Option(help="write comparison.md, .tex, .csv and .png here")] = None,
         ) -> None:
    """The table: test Many / Medium / Few / All, mean ± std over seeds per method and recipe, val All beside."""
    from studies.reports import comparison_table  # matplotlib: only `show` pays its import

    with user_errors():
        record = open_studies(storage, api).get_comparison_by_name(name)
    if out is not None:
        for path in comparison_table.write_all(record, out):
            typer.echo(f"wrote {path}", err=True)
    if as_json:
        typer.echo(record.model_dump_json(indent=2))
        return
    typer.echo(comparison_table.as_markdown(record), nl=False)
