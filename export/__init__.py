"""Training, export and evaluation scripts (need the `train` extra; never imported by the daemon)."""
