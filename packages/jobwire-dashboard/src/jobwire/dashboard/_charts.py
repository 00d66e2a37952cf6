"""Line charts as SVG coordinates, drawn by the `chart` template macro."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 600
HEIGHT = 160
PAD = 24


@dataclass(frozen=True)
class Series:
    """One line: its name (the legend and CSS class) and a value per point."""

    name: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class Chart:
    """A chart of one or more series sharing the x axis (one point per minute)."""

    title: str
    series: tuple[Series, ...]
    first_label: str = ""
    last_label: str = ""
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def top(self) -> int:
        """The largest value shown; the y axis runs from 0 to it (at least 1)."""
        return max((max(s.values, default=0) for s in self.series), default=0) or 1

    def points(self, series: Series) -> str:
        """The SVG `points` of `series`'s polyline."""
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self._xy(series.values))

    def _xy(self, values: Sequence[int]) -> list[tuple[float, float]]:
        if not values:
            return []
        step = (self.width - 2 * PAD) / max(1, len(values) - 1)
        span = self.height - 2 * PAD
        return [
            (PAD + index * step, PAD + span - span * value / self.top)
            for index, value in enumerate(values)
        ]

    @property
    def pad(self) -> int:
        """The margin around the plot, in SVG units."""
        return PAD
