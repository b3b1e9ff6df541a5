"""Tile planner: which tile shape and loop order a layer runs with, chosen by a stated objective.

Models the compiler's choice of tiling. A tile is one image, a range of output rows, columns and channels, and a
slice of the input channels of its groups; :mod:`simulator.tiler` cuts a layer into the tiles of one shape and
loop order and allocates their regions. Two loop orders (:mod:`simulator.plan`): slices innermost
(``SLICES_INNER``: one spatial tile's slices accumulate in one psum slot, weights stay resident only while there
is one slice) and slices outside the spatial tiles (``SLICES_OUTER``: each slice's weights loaded once per
output-channel tile and resident across its spatial tiles, every spatial tile's psum area resident across the
slices; legal when those areas fit the psum buffer together). Candidate shapes (greedy for ever finer
input-channel slicing, in both orders, and the whole layer as one tile in the whole buffer) are ranked by the
caller's objective: fewest modelled cycles, then least DRAM traffic, estimated from samples of each candidate's
tiles. Deliberately ignored: loop orders other than these two (e.g. output channels inside the spatial tiles)
and any search beyond the greedy candidates.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from simulator.config import HardwareConfig, LayerConfig
from simulator.errors import ConvsimError
from simulator.mapping import Mapping
from simulator.plan import SLICES_INNER, SLICES_OUTER, Tile, TilePlan
from simulator.tiler import Shape, Tiler, iter_oc_ranges

Objective = Callable[[TilePlan], tuple[int, ...]]  # (cycles, DRAM bytes) of a plan


SAMPLE_TILES = 16  # tiles of a candidate the objective models (then scaled to the candidate's tile count)
MARGIN = 0.02  # a candidate later in order must model this much fewer cycles: the sampled estimate's noise
FULL_TILES = 1024  # the two orders' best plans are compared whole (exactly) when they have at most this many tiles
PLAUSIBLE = 0.25  # ... and when the slices-outside estimate is at most this much above the slices-innermost one
Option = tuple[Tiler, Shape, str]  # a candidate: its planner (slots), tile shape and loop order


def _extrapolate(points: dict[int, tuple[float, ...]], at: int) -> tuple[float, ...]:
    """The straight line through two (x, values) points, at ``at`` (one point: its values)."""
    (x0, f0), *rest = sorted(points.items())
    if not rest:
        return f0
    (x1, f1), = rest
    return tuple(a + (b - a) * (at - x0) / (x1 - x0) for a, b in zip(f0, f1, strict=True))


def _score(option: Option, objective: Objective) -> tuple[float, ...]:
    """The objective of a candidate, estimated from small samples of its tiles.

    ``SLICES_INNER``: its first SAMPLE_TILES tiles, scaled to its tile count. ``SLICES_OUTER``: its first
    output-channel tile's cost is linear in its spatial tiles (each slice's weight load is paid once, not per
    tile) and in its slices (the first and last differ: no psum read, the write-back): it is extrapolated from
    samples of 2 and 3 spatial tiles by 2 and 3 slices (the first, a middle one, the last), then scaled to the
    number of output-channel tiles."""
    p, shape, order = option
    if order == SLICES_INNER:
        sample = tuple(itertools.islice(p.iter_tiles(shape), SAMPLE_TILES))
        scale = p.count(shape) / len(sample)
        return tuple(value * scale for value in objective(p.plan(shape, order, sample)))
    n_spatial, n_slices = p.spatial_count(shape), len(p.slices(next(
        iter_oc_ranges(p.cout_g, p.layer.groups, shape[2]))[1], shape[3]))
    spatial_points = (n_spatial,) if n_spatial <= 3 else (2, 3)
    slice_points = (n_slices,) if n_slices <= 3 else (2, 3)

    def sample(m: int, k: int) -> tuple[float, ...]:
        picks = None if k == n_slices else (lambda count: [0, *range(1, k - 1), count - 1])
        tiles = tuple(p.iter_outer(shape, m, picks, oc_tiles=1))
        return tuple(objective(p.plan(shape, order, tiles)))

    per_slices = {k: _extrapolate({m: sample(m, k) for m in spatial_points}, n_spatial) for k in slice_points}
    scale = p.count(shape) / (n_spatial * n_slices)  # output-channel tiles
    return tuple(value * scale for value in _extrapolate(per_slices, n_slices))


def plan_tiles(layer: LayerConfig, hw: HardwareConfig, mapping: Mapping,
               objective: Objective | None = None, *, loop_order: str | None = None) -> TilePlan:
    """The tile plan of ``layer`` under ``mapping``.

    Candidates (:meth:`Tiler.candidates`, each in loop order ``SLICES_INNER`` and, where it has several
    slices and spatial tiles and all their psum areas fit, ``SLICES_OUTER``; and the whole layer as one tile in
    the whole buffer under ``double_buffer``) are ranked by ``objective`` estimated from samples (:func:`_score`),
    per loop order: fewer slices first, a later candidate must model MARGIN fewer cycles, an equal one less DRAM
    traffic. The two orders' best are then compared (in full when small, see FULL_TILES and PLAUSIBLE); on a tie
    ``SLICES_INNER`` is kept. Without an objective, or when the first candidate is the whole layer in one tile,
    that one is taken. When not even the smallest tile fits half of each buffer, the tiles use
    whole buffers one at a time (the plan's ``slots`` is 1 and the pipeline schedules it serially). Refuses only
    when the smallest tile (one output pixel, or one phase period, of one output channel over one input channel)
    does not fit a whole buffer. ``loop_order`` (tests): consider only candidates in that order (refused when it
    has none).
    """
    slots = 2 if hw.pipeline.overlap == "double_buffer" else 1
    planner = Tiler(layer, hw, mapping, slots)
    rounds = planner.candidates()
    first = next(rounds, None)
    if first is None and slots == 2:  # not even the smallest tile fits half a buffer: tiles run one at a time
        slots, planner = 1, Tiler(layer, hw, mapping, 1)
        rounds = planner.candidates()
        first = next(rounds, None)
    if first is None:
        smallest = (mapping.out_step(0), mapping.out_step(1), 1, 1)
        raise ConvsimError(f"hardware.sram cannot hold the smallest tile of layer {layer.name!r} "
                           f"({smallest[0]}x{smallest[1]} output pixel(s) of one output channel over one input "
                           f"channel): {planner.fits(smallest)}")
    if loop_order is None and (objective is None or planner.count(first[0]) == 1):
        return planner.plan(first[0])  # no objective, or the whole layer fits one tile

    def outer(shape: Shape) -> Shape | None:
        """The ``SLICES_OUTER`` candidate of a shape: only where it changes the tile order (several slices and
        several spatial tiles)."""
        derived = planner.outer_shape(shape) if shape[3] < planner.cin_g else None
        return derived if derived is not None and planner.spatial_count(derived) > 1 else None

    def options(i: int, order: str) -> list[Option] | None:
        """Round ``i``'s candidates in ``order`` (None: no such round)."""
        while len(shapes) <= i:
            found = next(rounds, None)
            if found is None:
                return None
            shapes.append(found)
        if order == SLICES_INNER:
            out = [(planner, shape, order) for shape in shapes[i]]
            if i == 0 and whole is not None:  # a layer that fits one tile gets the whole buffer
                out.append((whole, (*layer.output_hw, layer.out_channels, layer.in_channels), order))
            return out
        derived = outer(shapes[i][0])  # (the round's shapes differ in columns and channels, which it re-cuts)
        return [] if derived is None else [(planner, derived, order)]

    def search(order: str, rounds: int | None = None) -> tuple[tuple[float, ...], Option] | None:
        """The best candidate in ``order``: rounds of ever finer slicing until one brings no gain (the cost
        falls, then rises); past round ``rounds``, only while it has a candidate (rounds without one are skipped
        until then); in order, a later candidate must model MARGIN fewer cycles."""
        best, i = None, 0
        while not (rounds is not None and i >= rounds and best is None) and (
                candidates := options(i, order)) is not None:
            improved = False
            for option in candidates:
                cost = _score(option, objective)  # type: ignore[arg-type]
                if best is None or _better(cost, best[0], MARGIN):
                    best, improved = (cost, option), True
            if not improved and best is not None:
                break
            i += 1
        return best

    shapes: list[list[Shape]] = [first]
    whole = None
    if slots == 2:
        whole = Tiler(layer, hw, mapping, 1)
        if whole.fits((*layer.output_hw, layer.out_channels, layer.in_channels)) is not None:
            whole = None
    if loop_order is not None:
        whole = whole if loop_order == SLICES_INNER else None
        if objective is None:  # a forced loop order without an objective: its first candidate
            i = 0
            while (candidates := options(i, loop_order)) is not None and not candidates:
                i += 1
            if not candidates:
                raise ConvsimError(f"layer {layer.name!r}: no tile shape fits in loop order {loop_order}")
            return _build(candidates[0])
    if loop_order is None:
        found = [search(SLICES_INNER)]
        found.append(search(SLICES_OUTER, len(shapes)))  # further than the other order only while improving
    else:
        found = [search(loop_order)]
    chosen = [best for best in found if best is not None]
    if not chosen:
        raise ConvsimError(f"layer {layer.name!r}: no tile shape fits in loop order {loop_order}")
    if len(chosen) == 1:
        return _build(chosen[0][1])
    (inner_cost, _), (outer_cost, _) = chosen
    if outer_cost[0] > inner_cost[0] * (1 + PLAUSIBLE):  # clearly worse, whatever the estimates' noise
        return _build(chosen[0][1])
    if sum(tiler.count(shape) for _, (tiler, shape, _) in chosen) <= FULL_TILES:  # small: compare them whole
        inner, outer_ = (_build(option) for _, option in chosen)
        return outer_ if _better(tuple(objective(outer_)), tuple(objective(inner)), 0.0) else inner  # type: ignore
    return _build(chosen[1][1] if _better(chosen[1][0], chosen[0][0], MARGIN) else chosen[0][1])


def _build(option: Option) -> TilePlan:
    """The whole plan of a candidate."""
    tiler, shape, order = option
    return tiler.plan(shape, order)


def _better(cost: tuple[float, ...], best: tuple[float, ...], margin: float) -> bool:
    """``cost`` beats ``best``: ``margin`` fewer cycles, or as many and less DRAM traffic."""
    return cost[0] < best[0] * (1 - margin) or (cost[0] == best[0] and cost < best)


__all__ = ["Tile", "TilePlan", "plan_tiles"]
