"""Errors caused by what the user asked for: the CLI and the API print the message, never a traceback."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input the user can fix; the message names what to change."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the stage, epoch and the knobs to lower."""


class CorruptImageError(UserInputError):
    """An image file that opens but does not decode (truncated, damaged); the message names its path. Every
    image loader raises it, so a worker's trial, a study's stop reason and `tailtune train` name the file."""
