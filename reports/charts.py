"""Small hand-written SVG charts: trend lines, grouped bars, stacked bars, sized for the page.

No charting library: a few hundred bytes of SVG per chart render the same in a browser, a mail
client and weasyprint, and cost nothing to install. Every text is XML-escaped here, so the result
is safe to embed in an autoescaped template as Markup.

Readable on paper: a chart is WIDTH x HEIGHT points (its width and height attributes are in pt
and its viewBox has the same numbers, so one unit is one point) and half the A4 text column
wide; the report's stylesheet does not scale it. Text is FONT_SIZE pt, the smallest (a bar's
value) MIN_FONT_SIZE pt. A line chart's y-axis is scaled to its data with a margin; when it does
not start at zero, a break mark on the axis and `zero_note` say so. Bars always start at zero
(a bar's length is its value).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f")
FONT = "DejaVu Sans, WenQuanYi Micro Hei, Noto Sans CJK SC, sans-serif"
WIDTH, HEIGHT = 255, 160
FONT_SIZE, MIN_FONT_SIZE = 8, 7.5

Series = Sequence[tuple[str, Sequence[float | None]]]
Formatter = Callable[[float], str]

_LEFT, _RIGHT, _TOP, _BOTTOM = 34, 6, 8, 44
_PLOT_W, _PLOT_H = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
# An average Latin glyph of DejaVu Sans is about 0.6 em wide, a CJK one 1 em (legend layout).
_GLYPH, _WIDE_GLYPH = 0.6, 1.0


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"


def _nice_step(span: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts `span` in about `ticks`."""
    raw = span / ticks if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(f * power for f in (1, 2, 2.5, 5, 10) if f * power >= raw * 0.999)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = _nice_step(value)
    return math.ceil(value / step - 1e-9) * step


def axis_range(
    values: Sequence[float], *, ceiling: float | None = None, from_zero: bool = False
) -> tuple[float, float, float]:
    """(low, high, step) of a y-axis for `values`: zero to a round maximum for bars (or when the
    data reach near zero anyway), otherwise the data's range with a margin of a tenth of it on
    each side, rounded out to the step; never above `ceiling` (100 % for a rate)."""
    if not values:
        return 0.0, ceiling or 1.0, (ceiling or 1.0) / 4
    low, high = min(values), max(values)
    if from_zero or low <= 0 or low < high * 0.3:
        top = _nice_max(high)
        if ceiling is not None:
            top = min(top, ceiling)
        return 0.0, top, _nice_step(top)
    margin = max((high - low) * 0.1, abs(high) * 0.01)
    step = _nice_step(high - low + 2 * margin)
    bottom = math.floor((low - margin) / step + 1e-9) * step
    top = math.ceil((high + margin) / step - 1e-9) * step
    if ceiling is not None and top > ceiling:
        top = ceiling
    return max(bottom, 0.0), top, step


def _svg_open(title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}pt" height="{HEIGHT}pt" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'font-family="{FONT}" font-size="{FONT_SIZE}">',
        f"<title>{escape(title)}</title>",
    ]


def _y(value: float, low: float, high: float) -> float:
    share = (value - low) / (high - low) if high > low else 0.0
    return _TOP + _PLOT_H - _PLOT_H * min(max(share, 0.0), 1.0)


def _y_axis(low: float, high: float, step: float, fmt: Formatter, zero_note: str) -> list[str]:
    parts = []
    count = round((high - low) / step)
    for tick in range(count + 1):
        value = low + step * tick
        y = _y(value, low, high)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}" '
            f'stroke="#ddd" stroke-width="0.6"/>'
            f'<text x="{_LEFT - 3}" y="{y + 2.8:.1f}" text-anchor="end" fill="#444">'
            f"{escape(fmt(value))}</text>"
        )
    if low > 0:
        # A break mark across the foot of the axis: it does not start at zero.
        base = _TOP + _PLOT_H
        parts.append(
            f'<polyline fill="none" stroke="#c00" stroke-width="1.2" points="{_LEFT - 4},'
            f'{base + 1} {_LEFT - 1},{base - 2} {_LEFT + 2},{base + 1} {_LEFT + 5},{base - 2}"/>'
        )
        if zero_note:
            # In the legend's row, right-aligned: clear of the data.
            parts.append(
                f'<text x="{WIDTH - _RIGHT}" y="{HEIGHT - 4}" text-anchor="end" fill="#c00">'
                f"{escape(zero_note)}</text>"
            )
    return parts


def _x_labels(labels: Sequence[str]) -> list[str]:
    """A period per slot: "10" over "2026" (the year only where it changes), or "2026"."""
    parts = []
    slot = _PLOT_W / max(len(labels), 1)
    shown_year = None
    for index, label in enumerate(labels):
        x = _LEFT + slot * (index + 0.5)
        year, _, part = label.partition("-")
        lines = [part] if part else [year]
        if part and year != shown_year:
            lines.append(year)
        shown_year = year
        for line_no, text in enumerate(lines):
            parts.append(
                f'<text x="{x:.1f}" y="{_TOP + _PLOT_H + 10 + 9 * line_no}" '
                f'text-anchor="middle" fill="#333">{escape(text)}</text>'
            )
    return parts


def _text_width(text: str) -> float:
    """About how many em `text` takes."""
    return sum(_WIDE_GLYPH if ord(char) >= 0x2E80 else _GLYPH for char in text)


def _legend(names: Sequence[str]) -> list[str]:
    parts = []
    x = float(_LEFT)
    y = HEIGHT - 4
    for index, name in enumerate(names):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 7}" width="7" height="7" fill="{colour}"/>'
            f'<text x="{x + 9:.1f}" y="{y}" fill="#333">{escape(name)}</text>'
        )
        x += 16 + FONT_SIZE * _text_width(name)
    return parts


def line_chart(
    labels: Sequence[str],
    series: Series,
    *,
    title: str,
    fmt: Formatter = number,
    top: float | None = None,
    zero_note: str = "",
) -> Markup:
    """One line per series over the labels (periods); None leaves a gap. The y-axis fits the
    data (`top`: never above it, e.g. 1.0 for rates); `zero_note` is written in the chart when
    the axis does not start at zero."""
    values = [v for _, points in series for v in points if v is not None]
    low, high, step = axis_range(values, ceiling=top)
    parts = _svg_open(title)
    parts += _y_axis(low, high, step, fmt, zero_note)
    parts += _x_labels(labels)
    parts += _legend([name for name, _ in series])
    slot = _PLOT_W / max(len(labels), 1)
    for index, (_, points) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        run: list[str] = []
        for position, value in enumerate([*points, None]):
            if value is None:
                if len(run) > 1:
                    parts.append(
                        f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                        f'points="{" ".join(run)}"/>'
                    )
                run = []
                continue
            x = _LEFT + slot * (position + 0.5)
            y = _y(value, low, high)
            run.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{colour}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    labels: Sequence[str],
    series: Series,
    *,
    title: str,
    fmt: Formatter = number,
    top: float | None = None,
) -> Markup:
    """Grouped bars from zero: for each label one bar per series, its value above it; None
    draws nothing."""
    values = [v for _, points in series for v in points if v is not None]
    low, high, step = axis_range(values, ceiling=top, from_zero=True)
    parts = _svg_open(title)
    parts += _y_axis(low, high, step, fmt, "")
    parts += _x_labels(labels)
    parts += _legend([name for name, _ in series])
    slot = _PLOT_W / max(len(labels), 1)
    width = slot * 0.9 / max(len(series), 1)
    for index, (_, points) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        for position, value in enumerate(points):
            if value is None:
                continue
            y = _y(value, low, high)
            x = _LEFT + slot * position + slot * 0.05 + width * index
            parts.append(
                f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{width - 1:.1f}" '
                f'height="{_TOP + _PLOT_H - y:.1f}" fill="{colour}"/>'
                f'<text x="{x + width / 2:.1f}" y="{y - 2:.1f}" text-anchor="middle" '
                f'font-size="{MIN_FONT_SIZE}" fill="#333">{escape(fmt(value))}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_bars(
    labels: Sequence[str], series: Series, *, title: str, names: dict[str, str] | None = None
) -> Markup:
    """Stacked bars from zero: each label's bar is the sum of the series (e.g. the priority
    mix); `names` renames series in the legend."""
    totals = [sum((points[i] or 0) for _, points in series) for i in range(len(labels))]
    low, high, step = axis_range(totals, from_zero=True)
    legend = [(names or {}).get(name, name) for name, _ in series]
    parts = _svg_open(title)
    parts += _y_axis(low, high, step, number, "")
    parts += _x_labels(labels)
    parts += _legend(legend)
    slot = _PLOT_W / max(len(labels), 1)
    for position in range(len(labels)):
        base = 0.0
        for index, (_, points) in enumerate(series):
            value = points[position] or 0
            if not value:
                continue
            y0, y1 = _y(base, low, high), _y(base + value, low, high)
            parts.append(
                f'<rect x="{_LEFT + slot * position + slot * 0.2:.1f}" y="{y1:.1f}" '
                f'width="{slot * 0.6:.1f}" height="{y0 - y1:.1f}" '
                f'fill="{PALETTE[index % len(PALETTE)]}"/>'
            )
            base += value
    parts.append("</svg>")
    return Markup("".join(parts))
