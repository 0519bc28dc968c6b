"""Errors caused by what the user asked for: the CLI and the API print the message, never a traceback."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input the user can fix; the message names what to change."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the stage, epoch and the knobs to lower."""
