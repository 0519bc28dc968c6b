"""`tailtune export` writes a trial's model as one file; `tailtune predict` classifies images with it.

    tailtune export wb-digits --storage sqlite:///t.db --artifact-dir tailtune-artifacts --out model.pt
    tailtune predict --model model.pt photos/ --top-k 3 --json
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tailtune.commands.common import ArtifactDirOption, StorageOption, connect, load_settings, user_errors
from trainers.errors import UserInputError

# trainers.loop.predict's batch: the trial's test features were computed in batches of this size, so a folder
# predicted in the same order and batches gives bit-identical features.
PREDICT_BATCH = 512


def export(
    name: Annotated[str, typer.Argument(help="study name")],
    out: Annotated[Path, typer.Option(help="model file to write; its card goes beside it as "
                                           "OUT.card.json and OUT.card.md")],
    storage: StorageOption = None,
    artifact_dir: ArtifactDirOption = None,
    trial: Annotated[int | None, typer.Option(help="trial number; default: the best trial by the study's "
                                                   "(first) objective")] = None,
    force: Annotated[bool, typer.Option(help="replace OUT and its card files when they exist (regular files "
                                             "only: a folder, FIFO or device is never replaced)")] = False,
) -> None:
    """Write a finished trial's model (backbone + its evaluated classifier + input rules + card) to one file."""
    from studies.reports.export import export_targets, export_trial, write_export
    from studies.store import registry

    with user_errors():
        export_targets(out, force=force)  # before any work: a wrong --out fails at once
        settings = load_settings(database={"url": storage}, artifact={"dir": artifact_dir})
        db = connect(settings)
        record = registry.get_study_by_name(db, name=name)
        exported = export_trial(db, study_id=record.id, trial_number=trial, artifact_dir=settings.artifact.dir)
        written = write_export(exported, out, force=force)
    test_all = (exported.card["results"]["test"] or {}).get("all")
    typer.echo(f"trial {exported.trial_number} of {name} (test All {test_all:.2f} %) -> "
               + ", ".join(str(path) for path in written))


def predict(
    paths: Annotated[list[Path], typer.Argument(help="image files, or folders searched recursively for "
                                                     ".png/.jpg/.jpeg")],
    model: Annotated[Path, typer.Option(help="a file written by `tailtune export`")],
    top_k: Annotated[int, typer.Option(min=1, help="classes reported per image, best first")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list of {path, label, score}")] = False,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="also write the rows to this CSV file")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="images per forward pass")] = PREDICT_BATCH,
) -> None:
    """Classify images with an exported model: label = class name, score = softmax probability."""
    import torch

    from trainers.config import RunOptions
    from trainers.device import resolve_runtime
    from trainers.exported import load_model_file

    with user_errors():
        files = image_files(paths)
        loaded = load_model_file(model, resolve_runtime(RunOptions(device=device)).device)
        top_k = min(top_k, len(loaded.class_names))
        rows: list[dict[str, Any]] = []
        for start in range(0, len(files), batch_size):
            batch = files[start:start + batch_size]
            scores, labels = torch.softmax(loaded.logits(loaded.input.read(batch)), dim=-1).topk(top_k, dim=-1)
            rows += [_row(path, [loaded.class_names[i] for i in label_row.tolist()], score_row.tolist())
                     for path, label_row, score_row in zip(batch, labels, scores, strict=True)]
    if csv_file is not None:
        _write_csv(rows, csv_file, top_k)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
    else:
        for row in rows:
            typer.echo(f"{row['path']}\t{row['label']}\t{row['score']:.4f}")


def image_files(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted, recursively)."""
    from trainers.data.images import is_image_file

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(file for file in path.rglob("*") if is_image_file(file))
            if not found:
                raise UserInputError(f"folder '{path}' has no .png, .jpg or .jpeg images")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserInputError(f"'{path}' does not exist; pass image files or folders")
    return files


def _row(path: Path, labels: list[str], scores: list[float]) -> dict[str, Any]:
    row: dict[str, Any] = {"path": str(path), "label": labels[0], "score": scores[0]}
    if len(labels) > 1:
        row["top_k"] = [{"label": label, "score": score} for label, score in zip(labels, scores, strict=True)]
    return row


def _write_csv(rows: list[dict[str, Any]], csv_file: Path, top_k: int) -> None:
    """Columns path, label, score, then label_2, score_2, ... up to --top-k."""
    header = ["path", "label", "score"] + [f"{column}_{rank}" for rank in range(2, top_k + 1)
                                           for column in ("label", "score")]
    with csv_file.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for row in rows:
            ranked = row.get("top_k", [])[1:]
            writer.writerow([row["path"], row["label"], row["score"],
                             *[value for entry in ranked for value in (entry["label"], entry["score"])]])
