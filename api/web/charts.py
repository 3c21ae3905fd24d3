"""Charts drawn on the server as SVG: no script, no network, readable without colour.

Every chart carries a title for screen readers and prints its numbers beside its marks;
the pages also give each chart's figures as a table.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

# Colours of the levels, each with at least 4.5:1 contrast against white, and told apart by
# their labels too (never by colour alone).
LEVEL_COLOURS = {
    "strong": "#1b6e3a",
    "medium": "#8a5a00",
    "weak": "#b3261e",
    "deceased": "#4a4a4a",
}
SERIES_COLOURS = ("#0b57d0", "#1b6e3a", "#8a5a00", "#b3261e", "#4a4a4a", "#6a1b9a")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _svg(width: int, height: int, title: str, body: str) -> Markup:
    """Wrap chart marks in an accessible, scalable SVG element."""
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" {FONT}><title>{escape(title)}</title>{body}</svg>'
    )


def stacked_bars(
    rows: Sequence[tuple[str, Mapping[str, int]]],
    *,
    series: Sequence[str],
    labels: Mapping[str, str],
    colours: Mapping[str, str],
    title: str,
) -> Markup:
    """Draw one horizontal bar per row, split by series as shares of the row's total."""
    label_w, bar_w, row_h = 90, 300, 26
    legend_h = 24
    height = legend_h + row_h * max(1, len(rows)) + 4
    parts = []
    x = 0
    for name in series:
        parts.append(
            f'<rect x="{x}" y="4" width="12" height="12" fill="{colours[name]}"/>'
            f'<text x="{x + 16}" y="14" fill="#1a1a1a">{escape(labels[name])}</text>'
        )
        x += 16 + 12 * max(2, len(labels[name])) + 16
    for i, (label, counts) in enumerate(rows):
        y = legend_h + i * row_h
        total = sum(counts.get(name, 0) for name in series)
        parts.append(f'<text x="0" y="{y + 16}" fill="#1a1a1a">{escape(label)}</text>')
        left = float(label_w)
        for name in series:
            count = counts.get(name, 0)
            if not total or not count:
                continue
            width = bar_w * count / total
            parts.append(
                f'<rect x="{left:.1f}" y="{y + 4}" width="{width:.1f}" height="16" '
                f'fill="{colours[name]}"><title>{escape(labels[name])}: {count}</title></rect>'
            )
            left += width
        parts.append(
            f'<text x="{label_w + bar_w + 6}" y="{y + 16}" fill="#1a1a1a">{total:,}</text>'
        )
    return _svg(label_w + bar_w + 70, height, title, "".join(parts))


def line_chart(
    points: Sequence[tuple[str, Mapping[str, int]]],
    *,
    series: Sequence[str],
    labels: Mapping[str, str],
    colours: Mapping[str, str],
    title: str,
) -> Markup:
    """Draw one line per series across the points (runs), as shares of each point's total."""
    width, height, left, top, bottom = 460, 220, 40, 28, 40
    plot_w, plot_h = width - left - 100, height - top - bottom
    parts = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#595959"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#595959"/>',
    ]
    for share in (0, 50, 100):
        y = top + plot_h - plot_h * share / 100
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{share}%</text>')
    n = len(points)
    step = plot_w / max(1, n - 1)
    for i, (label, _) in enumerate(points):
        x = left + (step * i if n > 1 else plot_w / 2)
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    for s, name in enumerate(series):
        coords = []
        for i, (_, counts) in enumerate(points):
            total = sum(counts.get(k, 0) for k in series) or 1
            x = left + (step * i if n > 1 else plot_w / 2)
            y = top + plot_h - plot_h * counts.get(name, 0) / total
            coords.append((x, y))
        colour = colours[name]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for x, y in coords:
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        if coords:
            x, y = coords[-1]
            parts.append(
                f'<text x="{left + plot_w + 8}" y="{top + 12 + 16 * s}" fill="{colour}">'
                f"{escape(labels[name])}</text>"
            )
    return _svg(width, height, title, "".join(parts))


def bars(items: Sequence[tuple[str, int]], *, title: str, colour: str = "#0b57d0") -> Markup:
    """Draw one horizontal bar per item, labelled with its count."""
    label_w, bar_w, row_h = 120, 260, 24
    peak = max((value for _, value in items), default=0) or 1
    parts = []
    for i, (label, value) in enumerate(items):
        y = i * row_h
        width = bar_w * value / peak
        parts.append(
            f'<text x="0" y="{y + 16}" fill="#1a1a1a">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{width:.1f}" height="16" fill="{colour}"/>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 16}" fill="#1a1a1a">{value:,}</text>'
        )
    return _svg(label_w + bar_w + 70, row_h * max(1, len(items)) + 4, title, "".join(parts))


def timeline(
    lanes: Sequence[tuple[str, Sequence[dt.date]]],
    *,
    first_day: dt.date,
    last_day: dt.date,
    title: str,
    marks: Sequence[tuple[dt.date, str]] = (),
) -> Markup:
    """Draw each source's traces as ticks on one lane per source, over a span of days."""
    label_w, plot_w, lane_h, top = 110, 340, 26, 8
    span = max(1, (last_day - first_day).days)
    height = top + lane_h * max(1, len(lanes)) + 30

    def x_of(day: dt.date) -> float:
        return label_w + plot_w * min(max((day - first_day).days, 0), span) / span

    parts = []
    for i, (label, days) in enumerate(lanes):
        y = top + i * lane_h
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        parts.append(
            f'<text x="0" y="{y + 16}" fill="#1a1a1a">{escape(label)} ({len(days)})</text>'
            f'<line x1="{label_w}" y1="{y + 12}" x2="{label_w + plot_w}" y2="{y + 12}" '
            'stroke="#d0d0d0"/>'
        )
        parts.extend(
            f'<rect x="{x_of(day) - 1.5:.1f}" y="{y + 3}" width="3" height="18" fill="{colour}">'
            f"<title>{day.isoformat()}</title></rect>"
            for day in days
        )
    axis_y = top + lane_h * max(1, len(lanes)) + 14
    parts.append(
        f'<text x="{label_w}" y="{axis_y}">{first_day.isoformat()}</text>'
        f'<text x="{label_w + plot_w}" y="{axis_y}" text-anchor="end">{last_day.isoformat()}</text>'
    )
    for day, label in marks:
        x = x_of(day)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y - 10}" stroke="#b3261e" '
            f'stroke-dasharray="4 3"/><text x="{x:.1f}" y="{axis_y + 14}" fill="#b3261e" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    return _svg(label_w + plot_w + 20, height + (16 if marks else 0), title, "".join(parts))


def _text_width(text: str) -> int:
    """Return about how many pixels `text` takes at the charts' font size."""
    return sum(12 if unicodedata.east_asian_width(c) in ("W", "F") else 7 for c in text)


def paired_bars(
    rows: Sequence[tuple[str, Sequence[int]]], *, names: Sequence[str], title: str
) -> Markup:
    """Draw, per row, one bar per named series (two policies side by side), each labelled."""
    # The labels' column fits the longest label (font-size 12: about 7 px a Latin letter,
    # 12 a Chinese character), so a long one never runs under the bars.
    widest = max((_text_width(label) for label, _ in rows), default=0)
    label_w, bar_w, bar_h = max(150, widest + 12), 240, 14
    row_h = bar_h * len(names) + 10
    legend_h = 22
    peak = max((value for _, values in rows for value in values), default=0) or 1
    parts = []
    x = 0
    for s, name in enumerate(names):
        colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
        parts.append(
            f'<rect x="{x}" y="4" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 16}" y="14" fill="#1a1a1a">{escape(name)}</text>'
        )
        x += 16 + max(32, _text_width(name)) + 20
    for i, (label, values) in enumerate(rows):
        y = legend_h + i * row_h
        parts.append(f'<text x="0" y="{y + bar_h + 2}" fill="#1a1a1a">{escape(label)}</text>')
        for s, value in enumerate(values):
            colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
            top = y + s * bar_h
            width = bar_w * value / peak
            parts.append(
                f'<rect x="{label_w}" y="{top + 1}" width="{width:.1f}" height="{bar_h - 2}" '
                f'fill="{colour}"><title>{escape(names[s])}: {value:,}</title></rect>'
                f'<text x="{label_w + width + 4:.1f}" y="{top + bar_h - 2}" '
                f'fill="#1a1a1a">{value:,}</text>'
            )
    return _svg(label_w + bar_w + 70, legend_h + row_h * max(1, len(rows)) + 4, title,
                "".join(parts))  # fmt: skip
