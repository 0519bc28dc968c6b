"""Errors of a trial's model file and of a report, apart from the code that raises them (studies/reports/export.py,
studies/artifacts/trial_models.py and studies/reports/report.py, importing torch or matplotlib) so the API maps
them to status codes without either."""

from __future__ import annotations

from trainers.errors import UserInputError


class TrialNotExportableError(UserInputError):
    """The trial is not COMPLETE: it has no finished model (the API answers 409, the CLI exits 2)."""


class TrialNotFoundError(UserInputError):
    """The study has no trial of that number (404)."""


class ModelFilesMissingError(UserInputError):
    """A trial's stored stage-1 or stage-2 file is absent, unreadable or of another format (404; the CLI exits 2)."""


class NoFinishedTrialsError(UserInputError):
    """A study with nothing to report yet: a state of the study, not a fault of the request (409)."""
