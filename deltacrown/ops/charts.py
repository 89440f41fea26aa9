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
        for value, cls, what in ((c.sent, "bar-ok", "sent"), (c.failed + c.bounced, "bar-alert", "failed or bounced"),
                                 (c.pending, "bar-pending", "pending")):
            w = plot_w * value / total if total else 0
            body.append(_rect(x, y + 4, w, row_h - 10, cls, f"{c.channel}: {value} {what} of {total}"))
            x += w
        if not total:
            body.append(_rect(left, y + 4, plot_w, row_h - 10, "bar-empty", f"{c.channel}: no deliveries"))
        body.append(_text(left + plot_w + 8, y + 17, rate, anchor="start"))
    return _svg(width, height, "Delivery success per channel: " + "; ".join(summaries), body)


def rate_per_day(days, value, label: str, threshold: float, alert_at_or_over: bool, detail) -> Markup:
    """Bars: a rate per day (days: delivery_rates.Window list, `value(day)` a 0..1 rate or None),
    a dashed line at `threshold`; a bar on the wrong side of it is drawn as an alert.
    `detail(day)`: the bar's tooltip (counts behind the rate)."""
    width, height, left, bottom, top = 720, 180, 48, 30, 24
    plot_w, plot_h = width - left - 10, height - bottom - top
    rates = [value(d) for d in days]
    if alert_at_or_over:  # bounce rate: 0 .. a little above the threshold (or the worst day)
        low, high = 0.0, max([threshold * 2] + [r for r in rates if r is not None])
    else:  # success rate: from a little under the threshold (or the worst day) .. 100 %
        low, high = min([1 - (1 - threshold) * 3] + [r for r in rates if r is not None]), 1.0
    span = (high - low) or 1.0

    def y(rate):
        return top + plot_h * (1 - (rate - low) / span)

    slot = plot_w / max(len(days), 1)
    body = [
        f'<line class="baseline" x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}"/>',
        f'<line class="gridline" x1="{left}" y1="{y(threshold):.1f}" x2="{width - 10}" y2="{y(threshold):.1f}"/>',
        _text(left - 6, y(threshold) + 4, f"{threshold:.0%}", anchor="end"),
        _text(left - 6, top + 4, f"{high:.0%}", anchor="end"),
        _text(left - 6, top + plot_h, f"{low:.0%}", anchor="end"),
        _text(left, 14, f"■ {label} per day (UTC); dashed: the {threshold:.0%} line", "legend-ok", anchor="start"),
    ]
    summaries = []
    for i, (day, rate) in enumerate(zip(days, rates)):
        x = left + i * slot + 4
        if rate is None:
            tip = f"{day.label}: nothing sent"
            body.append(_rect(x, top + plot_h - 2, slot - 8, 2, "bar-empty", tip))
        else:
            bad = rate >= threshold if alert_at_or_over else rate <= threshold
            tip = f"{day.label}: {rate:.1%} — {detail(day)}"
            body.append(_rect(x, y(max(rate, low)), slot - 8, top + plot_h - y(max(rate, low)),
                              "bar-alert" if bad else "bar-ok", tip))
        summaries.append(tip)
        body.append(_text(x + (slot - 8) / 2, height - 10, day.label[5:]))
    return _svg(width, height, f"{label} per day: " + "; ".join(summaries), body)
