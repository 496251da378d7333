"""Memory: measured and analytic, by concern.

- :mod:`explorer.memory.measured`: the byte account of a real training step (``MemoryAccountant``, ``account``).
- :mod:`explorer.memory.units`: bytes as text with the unit named (``fmt_bytes``: GB = 10^9, GiB = 2^30).
- :mod:`explorer.memory.specs`: transformer shapes without weights (``ModelSpec``, ``PUBLISHED``, ``spec_for``).
- :mod:`explorer.memory.plan`: what a method does to memory (``MemoryPlan``), returned by each method module.
- :mod:`explorer.memory.activations`: what autograd keeps for backward, op by op (and Korthikanti's formula).
- :mod:`explorer.memory.options`: precision, optimizer, checkpointing, ZeRO.
- :mod:`explorer.memory.analytic`: ``estimate``, the sum of it all.

Nothing is imported here: the method modules import :mod:`explorer.memory.plan`, which must stay light.
"""
