"""Signed, self-contained recordings: the file format, its hash chain, the recorder that writes them, and their checks."""
