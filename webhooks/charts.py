"""The dashboard's charts, drawn on the server as inline SVG: no JavaScript, no CDN, readable
without styles, with a <title> on every bar for the exact figure.

Input comes from `Store.series` (per day: spend, edit latency buckets, failures by reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

from markupsafe import Markup

__all__ = ["spend_chart", "latency_chart", "failures_chart", "percentile"]

# A drawing 340 units wide with 13-unit text, shown at most 520 px wide (the dashboard's CSS):
# its text is 11 CSS px or more from a 390 px phone to a wide screen (tests/test_browser.py).
WIDTH, HEIGHT = 340, 150
LEFT, RIGHT, TOP, BOTTOM = 52, 6, 10, 22
FONT = 13
INK, MUTED, GRID = "#1d1d1d", "#6b6b6b", "#e3e3e3"
OK, BAD, P90 = "#176b2c", "#b3261e", "#8ab596"


@dataclass(frozen=True)
class _Frame:
    days: list[str]
    top: float  # the value at the top of the plot

    def x(self, i: int) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * i / max(1, len(self.days))

    @property
    def step(self) -> float:
        return (WIDTH - LEFT - RIGHT) / max(1, len(self.days))

    def y(self, value: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - min(value, self.top) / self.top)


def _nice(value: float) -> float:
    """A round number at or above `value`, for the top of an axis."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 0.1
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _axes(frame: _Frame, label: str, unit: str) -> list[str]:
    parts = []
    for fraction in (0, 0.5, 1):
        value = frame.top * fraction
        y = frame.y(value)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        text = f"{unit}{value:.2f}" if unit == "$" else f"{value:g}{unit}"
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">{text}</text>')
    for i, day in enumerate(frame.days):
        if i % 7 == (len(frame.days) - 1) % 7:  # a date every week, today's included
            # Centred under its day; today's, at the right edge, ends there instead.
            x, anchor = ((WIDTH - 1, "end") if i == len(frame.days) - 1 and len(frame.days) > 1
                         else (frame.x(i) + frame.step / 2, "middle"))
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 5}" text-anchor="{anchor}" fill="{MUTED}">{day[5:]}</text>')
    return [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
            f'font-size="{FONT}" font-family="system-ui, sans-serif" class="chart">',
            f"<title>{escape(label)}</title>", *parts]


def spend_chart(series: list[dict[str, Any]], budget: float) -> Markup:
    """Spend per day, a bar each, against the daily budget (a dashed line); over it in red."""
    days = [d["day"] for d in series]
    spend = [float(d["spend"]) for d in series]
    frame = _Frame(days, _nice(max([*spend, budget, 0.01]) * 1.05))
    parts = _axes(frame, f"Spend per day, last {len(days)} days (budget ${budget:.2f})", "$")
    for i, value in enumerate(spend):
        if value <= 0:
            continue
        y = frame.y(value)
        colour = BAD if budget and value > budget else OK
        parts.append(f'<rect class="spend" x="{frame.x(i) + 1:.1f}" y="{y:.1f}" '
                     f'width="{max(1.0, frame.step - 2):.1f}" height="{frame.y(0) - y:.1f}" fill="{colour}">'
                     f"<title>{days[i]}: ${value:.4f}</title></rect>")
    if budget:
        y = frame.y(budget)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{BAD}" stroke-dasharray="4 3"><title>daily budget ${budget:.2f}</title></line>')
    return Markup("".join(parts) + "</svg>")


def percentile(buckets: dict[str, float], share: float) -> float | None:
    """The bucket bound under which `share` of a day's edit calls finished (None: no calls)."""
    total = buckets.get("+Inf", 0.0)
    if not total:
        return None
    bounds = sorted((float(k), v) for k, v in buckets.items() if k not in ("+Inf", "sum"))
    for bound, count in bounds:
        if count >= share * total:
            return bound
    return bounds[-1][0] * 1.5 if bounds else None  # slower than the last bucket


def latency_chart(series: list[dict[str, Any]]) -> Markup:
    """Edit-call latency per day: the median as a bar, the 90th percentile as a tick above it."""
    days = [d["day"] for d in series]
    medians = [percentile(d["edits"], 0.5) for d in series]
    p90s = [percentile(d["edits"], 0.9) for d in series]
    frame = _Frame(days, _nice(max([v for v in p90s if v is not None] or [60.0])))
    parts = _axes(frame, f"Edit call latency per day, last {len(days)} days (median, 90th percentile)", " s")
    for i, (median, p90) in enumerate(zip(medians, p90s, strict=True)):
        if median is None or p90 is None:
            continue
        calls = int(series[i]["edits"].get("+Inf", 0))
        mean = series[i]["edits"].get("sum", 0.0) / max(1, calls)
        y = frame.y(median)
        parts.append(f'<rect class="latency" x="{frame.x(i) + 1:.1f}" y="{y:.1f}" '
                     f'width="{max(1.0, frame.step - 2):.1f}" height="{frame.y(0) - y:.1f}" fill="{OK}">'
                     f"<title>{days[i]}: {calls} edit calls, median ≤ {median:g} s, 90% ≤ {p90:g} s, "
                     f"mean {mean:.1f} s</title></rect>")
        y90 = frame.y(p90)
        parts.append(f'<line x1="{frame.x(i) + 1:.1f}" x2="{frame.x(i) + frame.step - 1:.1f}" '
                     f'y1="{y90:.1f}" y2="{y90:.1f}" stroke="{P90}" stroke-width="3"/>')
    return Markup("".join(parts) + "</svg>")


def failures_chart(series: list[dict[str, Any]]) -> Markup:
    """Failed jobs by reason over the days given, as horizontal bars, the most frequent first."""
    totals: dict[str, int] = {}
    for day in series:
        for reason, count in day["failures"].items():
            totals[reason] = totals.get(reason, 0) + int(count)
    if not totals:
        return Markup(f'<p class="muted">No failures in the last {len(series)} days.</p>')
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:8]
    row = 34  # the reason on a line of its own, its bar beneath: narrow screens fit it whole
    height = row * len(ranked) + 4
    most = max(count for _, count in ranked)
    parts = [f'<svg viewBox="0 0 {WIDTH} {height}" role="img" font-size="{FONT}" '
             f'font-family="system-ui, sans-serif" class="chart" '
             f'aria-label="Failures by reason, last {len(series)} days">',
             f"<title>Failures by reason, last {len(series)} days</title>"]
    for i, (reason, count) in enumerate(ranked):
        y = 2 + i * row
        width = (WIDTH - 40) * count / most
        parts.append(f'<text x="0" y="{y + 13}" fill="{INK}">'
                     f"{escape(reason if len(reason) <= 44 else reason[:43] + '…')}</text>")
        parts.append(f'<rect class="failure" x="0" y="{y + 18}" width="{max(2.0, width):.1f}" '
                     f'height="10" fill="{BAD}"><title>{escape(reason)}: {count}</title></rect>')
        parts.append(f'<text x="{max(2.0, width) + 6:.1f}" y="{y + 28}" fill="{MUTED}">{count}</text>')
    return Markup("".join(parts) + "</svg>")
