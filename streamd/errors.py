"""Errors that the CLI turns into one clear line and a non-zero exit code."""

from __future__ import annotations


class StreamdError(Exception):
    """An error with a message meant for the user; `exit_code` is what the CLI returns."""

    exit_code = 1


class ConfigError(StreamdError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 2


class SourceError(StreamdError):
    """A video source cannot be opened or decoded."""


class SinkError(StreamdError):
    """An output cannot be written."""


class ModelError(StreamdError):
    """A model file is missing, does not match its checksum, or failed to run."""


class TruthError(StreamdError):
    """A ground-truth file (MOTChallenge gt.txt or its conditions sidecar) is missing or malformed."""
