"""Small hand-written SVG charts: trend lines, grouped bars, stacked bars.

No charting library: a few hundred bytes of SVG per chart render the same in a browser, a mail
client and weasyprint, and cost nothing to install. Every text is XML-escaped here, so the result
is safe to embed in an autoescaped template as Markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f")
FONT = "DejaVu Sans, WenQuanYi Micro Hei, Noto Sans CJK SC, sans-serif"

Series = Sequence[tuple[str, Sequence[float | None]]]
Formatter = Callable[[float], str]

_W, _H = 640, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 14, 52


def percent(value: float) -> str:
    return f"{value * 100:.0f}%"


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** len(str(int(value))) / 10 if value >= 1 else 0.1
    for factor in (1, 2, 2.5, 5, 10):
        if value <= step * factor:
            return step * factor
    return value


def _frame(
    labels: Sequence[str], top: float, fmt: Formatter, title: str, legend: Sequence[str]
) -> list[str]:
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}" '
        f'font-family="{FONT}" font-size="11">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in range(5):
        value = top * tick / 4
        y = _TOP + plot_h - plot_h * tick / 4
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" '
            f'stroke="#ddd" stroke-width="1"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">'
            f"{escape(fmt(value))}</text>"
        )
    slot = plot_w / max(len(labels), 1)
    for index, label in enumerate(labels):
        x = _LEFT + slot * (index + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle" fill="#333">'
            f"{escape(label)}</text>"
        )
    x = _LEFT
    for index, name in enumerate(legend):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{x}" y="{_H - 18}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{_H - 9}" fill="#333">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    return parts


def line_chart(
    labels: Sequence[str],
    series: Series,
    *,
    title: str,
    fmt: Formatter = number,
    top: float | None = None,
) -> Markup:
    """One line per series over the labels (months); None leaves a gap."""
    values = [v for _, points in series for v in points if v is not None]
    high = top if top is not None else _nice_max(max(values, default=0))
    parts = _frame(labels, high, fmt, title, [name for name, _ in series])
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(len(labels), 1)
    for index, (_, points) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        run: list[str] = []
        for position, value in enumerate([*points, None]):
            if value is None:
                if len(run) > 1:
                    parts.append(
                        f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                        f'points="{" ".join(run)}"/>'
                    )
                run = []
                continue
            x = _LEFT + slot * (position + 0.5)
            y = _TOP + plot_h - plot_h * min(value / high, 1.0)
            run.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
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
    """Grouped bars: for each label one bar per series; None draws nothing."""
    values = [v for _, points in series for v in points if v is not None]
    high = top if top is not None else _nice_max(max(values, default=0))
    parts = _frame(labels, high, fmt, title, [name for name, _ in series])
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(len(labels), 1)
    width = slot * 0.7 / max(len(series), 1)
    for index, (_, points) in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        for position, value in enumerate(points):
            if value is None:
                continue
            height = plot_h * min(value / high, 1.0)
            x = _LEFT + slot * position + slot * 0.15 + width * index
            parts.append(
                f'<rect x="{x:.1f}" y="{_TOP + plot_h - height:.1f}" width="{width:.1f}" '
                f'height="{height:.1f}" fill="{colour}"/>'
                f'<text x="{x + width / 2:.1f}" y="{_TOP + plot_h - height - 3:.1f}" '
                f'text-anchor="middle" font-size="9" fill="#333">{escape(fmt(value))}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked_bars(
    labels: Sequence[str], series: Series, *, title: str, names: dict[str, str] | None = None
) -> Markup:
    """Stacked bars: each label's bar is the sum of the series (e.g. the priority mix);
    `names` renames series in the legend."""
    totals = [sum((points[i] or 0) for _, points in series) for i in range(len(labels))]
    high = _nice_max(max(totals, default=0))
    legend = [(names or {}).get(name, name) for name, _ in series]
    parts = _frame(labels, high, number, title, legend)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(len(labels), 1)
    for position in range(len(labels)):
        base = 0.0
        for index, (_, points) in enumerate(series):
            value = points[position] or 0
            if not value:
                continue
            y0 = _TOP + plot_h - plot_h * base / high
            y1 = _TOP + plot_h - plot_h * (base + value) / high
            parts.append(
                f'<rect x="{_LEFT + slot * position + slot * 0.2:.1f}" y="{y1:.1f}" '
                f'width="{slot * 0.6:.1f}" height="{y0 - y1:.1f}" '
                f'fill="{PALETTE[index % len(PALETTE)]}"/>'
            )
            base += value
    parts.append("</svg>")
    return Markup("".join(parts))
