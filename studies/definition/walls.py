"""Whether a search hit a wall: the best trial's value of a searched parameter at the edge of its range, where the
optimum may lie outside what the study may sample, and how to widen the range.

A float range's edge is its outer 5 % (measured on the log axis for a log range); ordered numeric choices' edge is
their smallest or largest value. Unordered choices (a loss form) have no edge. A side that already sits at the
config field's own limit (a relative radius of 0, a weight decay of 0) is not a wall: nothing lies beyond it.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from studies.definition.space import Choices, FloatRange, ParamValue
from studies.definition.spec import StudySpec

EDGE_FRACTION = 0.05  # the outer share of a float range (on its log axis when log) that counts as its edge
Side = Literal["low", "high"]


class RangeWall(BaseModel):
    """A searched parameter whose best value sits at an edge of its range."""

    param: str
    side: Side = Field(description="low: at the range's lower end; high: at its upper end")
    value: ParamValue = Field(description="the best trial's value")
    bound: ParamValue = Field(description="the range's end it sits at")
    widen: str = Field(description="the search-space option that extends the range past that end")

    @property
    def text(self) -> str:
        return (f"hit a wall: {self.param} = {self.value:g} sits at the {self.side} end of its range "
                f"({self.bound:g}); the optimum may lie beyond it: widen it with {self.widen}")


def range_walls(spec: StudySpec, best_params: dict[str, ParamValue]) -> list[RangeWall]:
    """The walls of the best trial's params, in the order of the study's search space."""
    walls = []
    for name, param in spec.resolved_space().items():
        value = best_params.get(name)
        side = _edge(param, value) if value is not None else None
        if side is None:
            continue
        widened = _widened(param, side)
        if widened is not None and _valid(spec, name, widened[1] if side == "high" else widened[0]):
            walls.append(RangeWall(param=name, side=side, value=value, bound=_bound(param, side),
                                   widen=f"--space {name}={_space_text(param, widened)}"))
    return walls


def _edge(param: FloatRange | Choices, value: ParamValue) -> Side | None:
    if isinstance(param, FloatRange):
        if param.low == param.high or isinstance(value, str | bool):
            return None
        scale = math.log if param.log else float
        position = (scale(value) - scale(param.low)) / (scale(param.high) - scale(param.low))
        return "low" if position <= EDGE_FRACTION else "high" if position >= 1 - EDGE_FRACTION else None
    ordered = _ordered(param)
    if ordered is None or value not in ordered:
        return None
    return "low" if value == ordered[0] else "high" if value == ordered[-1] else None


def _ordered(param: Choices) -> list[float] | None:
    """Numeric choices, sorted, when there are at least two; None for strings or booleans."""
    if any(isinstance(c, str | bool) for c in param.choices) or len(set(param.choices)) < 2:
        return None
    return sorted(set(param.choices))


def _bound(param: FloatRange | Choices, side: Side) -> ParamValue:
    if isinstance(param, FloatRange):
        return param.low if side == "low" else param.high
    ordered = _ordered(param)
    return ordered[0] if side == "low" else ordered[-1]


def _widened(param: FloatRange | Choices, side: Side) -> tuple[float, float] | None:
    """New (low, high): a log range a decade further, a linear one by its own width (not below 0 from a
    positive low); ordered choices continue
    their last step's ratio (geometric grids) past the end. None where no such value exists (a 0 end)."""
    if isinstance(param, FloatRange):
        low, high = param.low, param.high
        if param.log:
            return (low / 10, high) if side == "low" else (low, high * 10)
        width = high - low
        # A positive range widened down stops at 0, the limit of every non-negative field (rates, decays, tau).
        return ((max(low - width, 0.0) if low > 0 else low - width), high) if side == "low" else (low, high + width)
    ordered = _ordered(param)
    end, neighbour = (ordered[0], ordered[1]) if side == "low" else (ordered[-1], ordered[-2])
    if end <= 0 or neighbour <= 0:
        return None
    beyond = end * end / neighbour
    if all(isinstance(c, int) for c in param.choices):
        beyond = round(beyond)
    return (beyond, ordered[-1]) if side == "low" else (ordered[0], beyond)


def _space_text(param: FloatRange | Choices, widened: tuple[float, float]) -> str:
    """What `tailtune study create --space` takes (the REST spec's search_space holds the same range)."""
    if isinstance(param, FloatRange):
        return f"{widened[0]:g}:{widened[1]:g}" + (":log" if param.log else "")
    values = sorted({*param.choices, *widened})
    return ",".join(f"{value:g}" for value in values)


def _valid(spec: StudySpec, name: str, value: float) -> bool:
    """Whether the config field takes `value` (a range at the field's own limit cannot be widened)."""
    try:
        spec.config_for({name: value})
    except ValueError:  # with_fields' message for a value the field refuses
        return False
    return True
