"""Pruning scores and methods in batched device ops: the twins of hippo_ref.pruning, same names."""
