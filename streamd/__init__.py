"""streamd: reversible face anonymization for live camera streams."""

__version__ = "0.1.0"
