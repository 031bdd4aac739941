"""The keys of the reversible path: restore key pairs and per-track keys (wrapped to the restore authority), and the host keys that sign recordings."""
