"""The privileged restore path: original faces put back into a recording for chosen tracks, into a private output."""
