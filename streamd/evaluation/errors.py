"""Errors of the evaluation harness; the CLI prints each as one line."""

from __future__ import annotations

from streamd.errors import StreamdError


class EvaluationError(StreamdError):
    """The evaluation cannot measure anything with the given input or options."""


class NoFacesError(EvaluationError):
    """The input holds no face the detector can find, so there is nothing to measure."""


class EvaluationKeyError(EvaluationError):
    """A `--key` that is malformed or that the chosen methods cannot use."""
