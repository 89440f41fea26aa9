"""Server-rendered SVG charts for the ops dashboard (no chart library, no script).

Colours come from classes in static/ops.css (the CSP forbids inline styles);
every bar has a <title> and every chart an aria-label, so nothing is told by
colour alone.
"""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape


def _svg(width: int, height: int, label: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _rect(x, y, w, h, cls, title) -> str:
    return (f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}">'
            f"<title>{escape(title)}</title></rect>")


def _text(x, y, text, cls="axis", anchor="middle") -> str:
    return f'<text class="{cls}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(text)}</text>'


def jobs_per_hour(hours, tz_name: str = "UTC") -> Markup:
    """Stacked bars: finished and failed runs per hour (hours: stats.HourBucket list)."""
    width, height, left, bottom, top = 720, 220, 40, 30, 24
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max([h.finished + h.failed for h in hours] + [1])
    tz = ZoneInfo(tz_name)
    slot = plot_w / max(len(hours), 1)
    total_failed = sum(h.failed for h in hours)
    total = sum(h.finished + h.failed for h in hours)
    body = [
        f'<line class="gridline" x1="{left}" y1="{top}" x2="{width - 10}" y2="{top}"/>',
        f'<line class="baseline" x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}"/>',
        _text(left - 6, top + 4, str(peak), anchor="end"),
        _text(left - 6, top + plot_h, "0", anchor="end"),
        _text(left, 14, "■ finished", "legend-ok", anchor="start"),
        _text(left + 90, 14, "■ failed", "legend-alert", anchor="start"),
    ]
    for i, h in enumerate(hours):
        local = datetime.fromtimestamp(h.start, tz=timezone.utc).astimezone(tz)
        label = f"{local:%H}:00 – {h.finished} finished, {h.failed} failed"
        x = left + i * slot + 2
        ok_h = plot_h * h.finished / peak
        fail_h = plot_h * h.failed / peak
        base = top + plot_h
        body.append(_rect(x, base - ok_h, slot - 4, ok_h, "bar-ok", label))
        body.append(_rect(x, base - ok_h - fail_h, slot - 4, fail_h, "bar-alert", label))
        if i % 3 == 0:
            body.append(_text(x + (slot - 4) / 2, height - 10, f"{local:%H}h"))
    summary = f"Jobs per hour over the last {len(hours)} hours: {total} runs, {total_failed} failed"
    return _svg(width, height, summary, body)


def delivery_success(channels) -> Markup:
    """One 100 % bar per channel: sent, failed, pending (channels: overview.ChannelDeliveries)."""
    row_h, left, width = 34, 90, 720
    height = 24 + row_h * max(len(channels), 1)
    plot_w = width - left - 150
    body = [
        _text(left, 14, "■ sent", "legend-ok", anchor="start"),
        _text(left + 70, 14, "■ failed", "legend-alert", anchor="start"),
        _text(left + 145, 14, "■ pending", "legend-pending", anchor="start"),
    ]
    summaries = []
    for i, c in enumerate(channels):
        y = 24 + i * row_h
        body.append(_text(left - 8, y + 17, c.channel, anchor="end"))
        total = c.total
        rate = f"{c.success_rate:.1%} success" if c.success_rate is not None else "no deliveries"
        summaries.append(f"{c.channel}: {rate}")
        x = left
        for value, cls, what in ((c.sent, "bar-ok", "sent"), (c.failed, "bar-alert", "failed"),
                                 (c.pending, "bar-pending", "pending")):
            w = plot_w * value / total if total else 0
            body.append(_rect(x, y + 4, w, row_h - 10, cls, f"{c.channel}: {value} {what} of {total}"))
            x += w
        if not total:
            body.append(_rect(left, y + 4, plot_w, row_h - 10, "bar-empty", f"{c.channel}: no deliveries"))
        body.append(_text(left + plot_w + 8, y + 17, rate, anchor="start"))
    return _svg(width, height, "Delivery success per channel: " + "; ".join(summaries), body)
