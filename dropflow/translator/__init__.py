"""Logical graph -> physical graph: parse, unroll, partition, map (pure functions; see issue 3)."""
