"""The engine's hardware blocks, one module each, and the record every stage returns.

A stage module offers three things: pure value functions (arrays and ints in, arrays out), a pure cost function
(shapes, byte counts and the stage's own hardware sub-config in, cycles out), and a small adapter pair used by
:mod:`simulator.pipeline`: ``cost(ctx, tile) -> StageCost`` and ``execute(sram, dram, ctx, tile) -> None``.
"""
