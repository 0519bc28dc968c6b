"""A finished trial as its model: stage-1 weights from the cache + the trial's stored stage-2 output, one file.

    tailtune export wb-digits --storage sqlite:///t.db --artifact-dir tailtune-artifacts --out model.pt

The file (trainers/exported.py) carries its model card; `write_export` also puts the card beside it as JSON
and Markdown. Nothing is trained: a trial whose stage-2 output was not stored cannot be exported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from optuna.trial import FrozenTrial, TrialState

from studies.artifacts.cache import stage1_weights_path
from studies.artifacts.trial_models import STAGE2_FILE_ATTR, load_trial_model
from studies.definition.errors import ModelFilesMissingError, TrialNotExportableError, TrialNotFoundError
from studies.definition.records import StudyRecord, best_minus
from studies.store import registry
from studies.store.db import Database
from trainers.config import ExperimentConfig
from trainers.errors import UserInputError
from trainers.exported import TrialModelParts, model_file_payload, serialized, write_atomically
from trainers.presets import PRESETS, paper_comparison, preset_differences
from trainers.provenance import git_revision, tailtune_version
from trainers.results import SPLITS, SplitCoverage


@dataclass(frozen=True)
class ExportedTrial:
    study: str
    trial_number: int
    content: bytes  # the model file
    card: dict[str, Any]

    @property
    def file_name(self) -> str:
        return f"{self.study}-trial{self.trial_number}.pt"


def export_trial(db: Database, *, study_id: int, trial_number: int | None, artifact_dir: Path) -> ExportedTrial:
    """The model file of trial `trial_number` of the study (None: the confirmed best configuration's search trial,
    i.e. at the study's seed; without confirmation, the best trial by the first objective)."""
    record = registry.get_study(db, study_id=study_id)
    if trial_number is None:
        if record.best_trial_number is None:
            raise TrialNotExportableError(f"study {record.name!r} has no COMPLETE trial yet, so no model to export; "
                                          f"run a worker: tailtune worker --study {record.name}")
        confirmed = record.confirmed
        trial_number = confirmed.best.trial_number if confirmed and confirmed.complete else record.best_trial_number
    trial = _finished_trial(db, record, trial_number)
    parts = _stored_parts(record, trial, artifact_dir)
    stage1_state = _stage1_state(record, trial, artifact_dir) if parts.classifier.backbone_state is None else {}
    card = model_card(record, trial, parts)
    return ExportedTrial(study=record.name, trial_number=trial.number,
                         content=serialized(model_file_payload(parts, stage1_state, card)), card=card)


def export_targets(out: Path, *, force: bool) -> list[Path]:
    """The model file and its two card files; a UserInputError for one that exists as anything but a regular
    file (a folder, FIFO, socket or device is never replaced) or, without `force`, as a regular file."""
    targets = [out, out.with_suffix(".card.json"), out.with_suffix(".card.md")]
    for target in targets:
        if target.exists() and not target.is_file():
            raise UserInputError(f"'{target}' exists and is not a regular file; export writes only regular files: "
                                 "choose another --out")
        if target.exists() and not force:
            raise UserInputError(f"'{target}' exists; pass --force to replace it, or choose another --out")
    return targets


def write_export(exported: ExportedTrial, out: Path, *, force: bool = False) -> list[Path]:
    """The model file at `out`, its card beside it as OUT.card.json and OUT.card.md; returns the three paths.
    Checked just before writing (export_targets), so nothing but a regular file is ever replaced."""
    out, card_json, card_markdown = export_targets(out, force=force)
    write_atomically(exported.content, out)
    write_atomically(json.dumps(exported.card, indent=2).encode(), card_json)
    write_atomically(card_as_markdown(exported.card).encode(), card_markdown)
    return [out, card_json, card_markdown]


def _finished_trial(db: Database, record: StudyRecord, number: int) -> FrozenTrial:
    storage = db.optuna_storage()
    try:
        trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(record.id, number))
    except KeyError:
        raise TrialNotFoundError(f"study {record.name!r} has no trial {number}; list its trials to see their "
                                 "numbers") from None
    if trial.state != TrialState.COMPLETE:
        raise TrialNotExportableError(f"trial {number} of study {record.name!r} is {trial.state.name}, not "
                                      "COMPLETE: only a finished trial has a model to export")
    return trial


def _stored_parts(record: StudyRecord, trial: FrozenTrial, artifact_dir: Path) -> TrialModelParts:
    relative = trial.user_attrs.get(STAGE2_FILE_ATTR)
    if relative is None:
        raise ModelFilesMissingError(f"trial {trial.number} of study {record.name!r} has no stored stage-2 result "
                                     "(it finished before tailtune kept them); re-run its params in a new trial")
    try:
        return load_trial_model(artifact_dir, relative)
    except FileNotFoundError as error:
        raise ModelFilesMissingError(f"{error} for trial {trial.number} of study {record.name!r}; pass the "
                                     "--artifact-dir (TAILTUNE_ARTIFACT_DIR) of the worker that ran it") from None


def _stage1_state(record: StudyRecord, trial: FrozenTrial, artifact_dir: Path) -> dict[str, torch.Tensor]:
    path = stage1_weights_path(artifact_dir, trial.user_attrs["stage1_key"])
    if not path.is_file():
        # Named under the artifact directory: the API sends this message to clients.
        raise ModelFilesMissingError(f"no cached stage-1 weights '{path.relative_to(artifact_dir)}' in the artifact "
                                     f"directory for trial {trial.number} of study "
                                     f"{record.name!r}; pass the --artifact-dir (TAILTUNE_ARTIFACT_DIR) of the "
                                     "worker that ran it")
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------- model card
def model_card(record: StudyRecord, trial: FrozenTrial, parts: TrialModelParts) -> dict[str, Any]:
    """What the model is, what it scored and where it came from, as JSON-ready values."""
    attrs, config = trial.user_attrs, trial.user_attrs["config"]
    return {
        "model": {"arch": parts.arch, "classes": len(parts.class_names), "input": _input_card(parts),
                  "flip_tta": parts.classifier.flip_tta, "classifier": _classifier_text(config)},
        "data_set": {"name": config["data"]["name"], "class_names": parts.class_names,
                     "class_counts": attrs.get("class_counts"), "split_rule": parts.split_rule,
                     "val_coverage": attrs.get("val_coverage")},
        "method": config["method"], "params": trial.params, "config": config,
        "results": {"objectives": record.spec.objectives, "values": trial.values,
                    "val": attrs.get("val"), "test": attrs.get("test"), "stage1_val": attrs.get("stage1_val"),
                    "stage1_test": attrs.get("stage1_test"), "per_class_test": attrs.get("per_class_test")},
        "recipe": _recipe(record, ExperimentConfig.model_validate(config)),
        "margins": _margins(record, attrs),
        "confirmed": _confirmed(record, trial.number),
        "provenance": {"study": record.name, "study_id": record.id, "trial": trial.number,
                       "completed_at": trial.datetime_complete.isoformat() if trial.datetime_complete else None,
                       "stage1_key": attrs.get("stage1_key"), "stage2_file": attrs.get(STAGE2_FILE_ATTR),
                       "trained_with": attrs.get("provenance"),
                       "exported_with": {"tailtune_version": tailtune_version(), "git_revision": git_revision(),
                                         "torch_version": str(torch.__version__)},
                       "exported_at": datetime.now(UTC).isoformat(timespec="seconds")},
    }


def _input_card(parts: TrialModelParts) -> dict[str, Any]:
    spec = parts.input
    return {"image_size": spec.image_size, "resize_shorter_side": spec.resize, "channels": spec.channels,
            "mean": list(spec.mean), "std": list(spec.std),
            "rule": f"decode as {'RGB' if spec.channels == 3 else 'grayscale'}, resize the shorter side to "
                    f"{spec.resize} (bilinear), centre-crop {spec.image_size}x{spec.image_size}, "
                    "(x / 255 - mean) / std per channel"}


def _classifier_text(config: dict[str, Any]) -> str:
    stage2 = config["stage2"]
    if stage2["kind"] == "tau-norm":
        return f"stage-1 classifier, tau-normalised (tau {stage2['tau']:g}) and folded into W"
    if stage2["kind"] == "logit-adjust":
        return (f"stage-1 classifier with post-hoc {stage2['form']} logit adjustment (tau {stage2['tau']:g}) "
                "as a per-class logit scale/offset")
    return f"re-trained classifier (loss {stage2['loss']}, {stage2['layers']}, BN {stage2['bn_mode']})"


def _recipe(record: StudyRecord, config: ExperimentConfig) -> dict[str, Any] | None:
    """The study's preset and its paper's numbers, which are this trial's to compare with only while the trial
    runs the preset unmodified."""
    name = record.spec.preset
    if name is None:
        return None
    differences = preset_differences(name, config)
    return {"preset": name, "paper": PRESETS[name].paper, "differs_in": differences,
            "reported_test": None if differences else PRESETS[name].reported,
            "comparison": paper_comparison(name, config)}


def _margins(record: StudyRecord, attrs: dict[str, Any]) -> dict[str, Any]:
    """This trial minus the study's simple baseline and minus its recipe trial, per split, in points; the
    baseline as stored (or why it is missing)."""
    stored = {"state": None, "model": None, "val": None, "test": None, "reason": "no worker has fitted it yet"}
    if record.baseline is not None:
        stored = record.baseline.model_dump(include=set(stored))
    margins: dict[str, Any] = {"baseline": stored}
    for name, reference in (("baseline", record.baseline), ("recipe", record.recipe)):
        if reference is not None and reference.val is not None and reference.test is not None:
            margins[f"minus_{name}"] = {part: best_minus(attrs.get(part), getattr(reference, part))
                                        for part in ("val", "test")}
    return margins
def _confirmed(record: StudyRecord, trial_number: int) -> dict[str, Any] | None:
    """This configuration over seeds, when the study confirmed it; with best - recipe when it is the best."""
    answer = record.confirmed
    found = next((c for c in answer.candidates if c.trial_number == trial_number), None) if answer else None
    if answer is None or found is None:
        return None
    is_best = found.trial_number == answer.best.trial_number
    return {"is_confirmed_best": is_best, "seeds": found.seeds,
            "val": _dumped(found.val), "test": _dumped(found.test),
            "best_minus_recipe": answer.best_minus_recipe.model_dump() if is_best and answer.best_minus_recipe
            else None, "verdict": answer.verdict if is_best else None}


def _dumped(summaries: dict[str, Any]) -> dict[str, Any]:
    return {split: summary.model_dump() if summary is not None else None for split, summary in summaries.items()}


def card_as_markdown(card: dict[str, Any]) -> str:
    model, data, results, origin = card["model"], card["data_set"], card["results"], card["provenance"]
    lines = [f"# Model card: {origin['study']}, trial {origin['trial']}", "",
             f"**Method** {card['method']} on **{data['name']}** ({model['classes']} classes), {model['arch']}. "
             f"Classifier: {model['classifier']}; flip TTA {'on' if model['flip_tta'] else 'off'}.", "",
             f"**Input:** {model['input']['rule']}; mean {model['input']['mean']}, std {model['input']['std']}.",
             "", "## Accuracy (per-class mean, percent)", "", "| split | All | Many | Medium | Few |",
             "|---|---|---|---|---|"]
    for name in ("val", "test", "stage1_val", "stage1_test"):
        lines.append(f"| {name} | " + " | ".join(_percent((results[name] or {}).get(key))
                                                for key in SPLITS) + " |")
    margins = card["margins"]
    for name in ("baseline", "recipe"):
        for part, values in margins.get(f"minus_{name}", {}).items():
            lines.append(f"| {part} - {name} | " + " | ".join(_signed(values.get(key))
                                                              for key in SPLITS) + " |")
    lines += ["", _baseline_line(margins["baseline"])]
    rule = data["split_rule"]
    lines += ["", f"Many / Medium / Few: {rule['rule']} (Many n_k > {rule['many_above']:g}, Few n_k < "
              f"{rule['few_below']:g}). Objectives (val): {', '.join(results['objectives'])} = {results['values']}.",
              *([f"Val coverage: {SplitCoverage.model_validate(data['val_coverage']).text('val')}."]
                if data.get("val_coverage") else []),
              "", "## Params", "", *[f"- `{key}` = {value}" for key, value in card["params"].items()]]
    if card["recipe"]:
        recipe = card["recipe"]
        lines += ["", f"## Recipe: {recipe['preset']}", "", recipe["comparison"]]
    lines += _confirmed_lines(card.get("confirmed"))
    trained = origin["trained_with"] or {}
    lines += ["", "## Provenance", "", f"- study {origin['study']} (id {origin['study_id']}), trial "
              f"{origin['trial']}, completed {origin['completed_at']}",
              f"- trained on {trained.get('device')} with torch {trained.get('torch_version')}, tailtune "
              f"{trained.get('tailtune_version')}, git {trained.get('git_revision')}",
              f"- stage-1 cache key {origin['stage1_key']}; stage-2 file {origin['stage2_file']}",
              f"- exported {origin['exported_at']} by tailtune {origin['exported_with']['tailtune_version']}", ""]
    return "\n".join(lines)


def _baseline_line(baseline: dict[str, Any]) -> str:
    if baseline["state"] != "done":
        return f"Baseline: none ({baseline['state'] or 'not fitted'}: {baseline['reason']})."
    return (f"Baseline: {baseline['model']}, fitted on the study's own splits: val All "
            f"{_percent(baseline['val']['all'])}, test All {_percent(baseline['test']['all'])}.")
def _confirmed_lines(confirmed: dict[str, Any] | None) -> list[str]:
    if not confirmed:
        return []
    lines = ["", f"## Over seeds {confirmed['seeds']} (mean ± std)", "", "| split | All | Many | Medium | Few |",
             "|---|---|---|---|---|"]
    for name in ("val", "test"):
        lines.append(f"| {name} | " + " | ".join(
            "-" if cell is None else f"{cell['mean']:.2f} ± {cell['std'] or 0:.2f}"
            for cell in (confirmed[name].get(key) for key in SPLITS)) + " |")
    return lines + (["", f"Best - recipe: {confirmed['verdict']}"] if confirmed["verdict"] else [])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"
