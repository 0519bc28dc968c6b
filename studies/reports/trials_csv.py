"""Every trial of a study as CSV rows: number, state, per-split val/test, duration, worker, one column per param.

Read page by page, so a study of 10k trials is streamed, never held whole.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from studies.definition.confirmation import ConfirmedAnswer
from studies.definition.records import MAX_PAGE_SIZE, TrialRecord
from studies.store import registry
from studies.store.db import Database
from trainers.results import SPLITS

# Columns of a confirmed configuration's row: its mean and std over seeds of these (part, split) accuracies.
OVER_SEEDS_SPLITS = (("val", "all"), ("test", "all"), ("test", "few"))


def trials_csv(db: Database, *, study_id: int) -> Iterator[str]:
    """The header line, then one chunk of lines per page of trials; the param columns are the study's space.
    An unknown study raises here, before the first chunk (a streamed response cannot change its status later)."""
    record = registry.get_study(db, study_id=study_id)
    return _chunks(db, study_id, sorted(record.spec.resolved_space()), _over_seeds(record.confirmed))


def _over_seeds(answer: ConfirmedAnswer | None) -> dict[int, list[object]]:
    """Trial number -> the OVER_SEEDS cells of each confirmed configuration (its search trial's row)."""
    if answer is None:
        return {}
    cells = {}
    for candidate in answer.candidates:
        summaries = [getattr(candidate, part)[split] for part, split in OVER_SEEDS_SPLITS]
        cells[candidate.trial_number] = [candidate.trial_number == answer.best.trial_number, len(candidate.seeds),
                                         *(value for s in summaries for value in ((s.mean, s.std) if s else ("", "")))]
    return cells


def _chunks(db: Database, study_id: int, params: list[str], over_seeds: dict[int, list[object]]) -> Iterator[str]:
    header = ["number", "state", *(f"{split}_{name}" for split in ("val", "test") for name in SPLITS),
              "duration_s", "worker", "retried_from", *params, "confirmed_best", "seeds",
              *(f"{part}_{split}_{stat}_over_seeds" for part, split in OVER_SEEDS_SPLITS for stat in ("mean", "std"))]
    yield _lines([header])
    offset = 0
    while True:
        page = registry.list_trials(db, study_id=study_id, offset=offset, limit=MAX_PAGE_SIZE)
        if page.items:
            yield _lines([_row(trial, params) + over_seeds.get(trial.number, []) for trial in page.items])
        offset += MAX_PAGE_SIZE
        if offset >= page.total:
            return


def _row(trial: TrialRecord, params: list[str]) -> list[object]:
    splits = [(values or {}).get(name) for values in (trial.val, trial.test) for name in SPLITS]
    return [trial.number, trial.state, *splits, trial.duration_s, trial.worker, trial.retried_from,
            *(trial.params.get(name) for name in params)]


def _lines(rows: list[list[object]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()
