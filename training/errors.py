"""Errors that end a training run with a clear message and a distinct exit code (the pod's, the test's)."""

from __future__ import annotations


class TrainingError(Exception):
    """A run that cannot go on; the message says why and what to change."""

    exit_code = 1


class ConfigError(TrainingError):
    """The config file or a --set override is wrong, or names something that is not there."""

    exit_code = 2


class DatasetError(TrainingError):
    """The dataset cannot be trained on: missing, empty, wrong class count, too many unreadable images."""

    exit_code = 3


class DivergedError(TrainingError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 4
