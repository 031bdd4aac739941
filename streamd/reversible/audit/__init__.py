"""The audit log of restores: append-only, hash-chained and keyed, verified on demand."""
