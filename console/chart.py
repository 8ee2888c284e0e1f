"""A bar chart of weekly contacts as plain numbers for an inline SVG (no JavaScript)."""

from __future__ import annotations

from dataclasses import dataclass

from hotline.stats import WeekRow

WIDTH, HEIGHT, AXIS = 640, 200, 24


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    peak: int


def weekly_bars(weeks: tuple[WeekRow, ...]) -> Chart:
    """Bars scaled to the busiest week; labels are the weeks' start dates."""
    peak = max((w.total for w in weeks), default=0) or 1
    slot = WIDTH / max(len(weeks), 1)
    bars = tuple(
        Bar(
            x=round(i * slot + slot * 0.15, 1),
            y=round(HEIGHT - AXIS - (HEIGHT - 2 * AXIS) * w.total / peak, 1),
            width=round(slot * 0.7, 1),
            height=round((HEIGHT - 2 * AXIS) * w.total / peak, 1),
            label=w.week_start.strftime("%d %b"),
            value=w.total,
        )
        for i, w in enumerate(weeks)
    )
    return Chart(WIDTH, HEIGHT, bars, peak)
