"""Errors that the CLI turns into one clear line and a non-zero exit code."""

from __future__ import annotations


class StreamdError(Exception):
    """An error with a message meant for the user; `exit_code` is what the CLI returns."""

    exit_code = 1
    #: Retrying cannot help (a file that is not there, a setting that cannot work): a supervised camera
    #: stops in its `failed` state instead of restarting.
    permanent = False


class ConfigError(StreamdError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 2
    permanent = True


class SourceError(StreamdError):
    """A video source cannot be opened or decoded."""


class UnusableSourceError(SourceError):
    """The source cannot work as configured (file missing, not a video): retrying will not help."""

    permanent = True


class SinkError(StreamdError):
    """An output cannot be written."""


class UnusableOutputError(SinkError):
    """The output cannot work as configured (its folder is missing or not writable)."""

    permanent = True


class ModelError(StreamdError):
    """A model file is missing, does not match its checksum, or failed to run."""

    permanent = True


class TruthError(StreamdError):
    """A ground-truth file (MOTChallenge gt.txt or its conditions sidecar) is missing or malformed."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) asked a one-shot run to stop: handled like Ctrl-C, outputs kept as incomplete."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
