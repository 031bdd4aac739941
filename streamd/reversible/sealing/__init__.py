"""The daemon's half of reversibility: each track's original face regions encoded as a face stream and sealed under its track key."""
