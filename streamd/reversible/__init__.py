"""The reversible path: keys, sealing, signed recordings, restore and its audit log."""
