"""The self-contained HTML report: inline CSS, PNGs as data URIs, no script, no external URL."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from benchmarks.results import Result
from benchmarks.table import map_text
from pipeline.report import plots
from pipeline.report.search import search_html
from pipeline.report.summary import (
    GAIN_HEADER,
    DeviceSummary,
    Row,
    SourceGain,
    fmt,
    fmt_ratio,
    gain_cells,
    measured_on,
    models_text,
    setup_text,
)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1f2328; background: #f6f8fa; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { margin-top: 36px; border-bottom: 1px solid #d0d7de; padding-bottom: 6px; }
h3 { margin-top: 22px; font-size: 16px; }
.sub { color: #59636e; margin: 0 0 16px; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 4px 20px 18px;
          margin-top: 20px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e5e8eb; padding: 5px 8px; text-align: right; white-space: nowrap; }
th { background: #f0f3f6; font-weight: 600; white-space: normal; vertical-align: bottom; }
.scroll { overflow-x: auto; }
td.l, th.l { text-align: left; }
td.flags { white-space: normal; }
tr.pareto td:first-child { font-weight: 600; }
.star { color: #bf8700; }
.badge { display: inline-block; border-radius: 10px; padding: 0 7px; font-size: 11px; margin-left: 4px;
         background: #ddf4ff; color: #0550ae; }
.badge.warn { background: #fff1c5; color: #7d4e00; }
.loss { color: #cf222e; } .gain { color: #1a7f37; }
.note { background: #fff8c5; border-left: 4px solid #d4a72c; padding: 6px 10px; margin: 8px 0;
        font-size: 13px; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
.plots img { max-width: 100%; width: 530px; border: 1px solid #e5e8eb; border-radius: 6px; }
dl.fp { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 13px;
        margin: 6px 0; }
dl.fp dt { color: #59636e; } dl.fp dd { margin: 0; }
footer { color: #59636e; font-size: 12px; margin-top: 32px; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img src="{data_uri(png)}" alt="{escape(alt)}">'


def _fingerprint(info: dict[str, Any]) -> str:
    # threads differ per result (the table's column), so the first result's would mislead here
    items = [
        (k, v)
        for k, v in info.items()
        if isinstance(v, str | int | float | bool) and k not in ("name", "threads_used")
    ]
    if not items:
        return ""
    cells = "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(str(v))}</dd>" for k, v in items)
    return f'<dl class="fp">{cells}</dl>'


def _delta(value: float | None) -> str:
    if value is None:
        return "—"
    css = "loss" if value < 0 else ("gain" if value > 0 else "")
    return f'<span class="{css}">{fmt(value, digits=4, signed=True)}</span>'


def _target_cell(row: Row) -> str:
    r = row.result
    star = ' <span class="star" title="on the Pareto front">★</span>' if row.pareto else ""
    return f'<td class="l">{escape(r.key)}{star}</td>'


def _precision_cell(row: Row) -> str:
    r = row.result
    css = "badge warn" if row.precision_changed else "badge"
    title = f"requested {r.requested_precision}, ran as {r.precision}" if row.precision_changed else ""
    return f'<td class="l"><span class="{css}" title="{escape(title)}">{escape(r.precision)}</span></td>'


def _header(head: list[str], left: set[str]) -> str:
    return "".join(f'<th class="{"l" if h in left else ""}">{escape(h)}</th>' for h in head)


def _flag(flag: str) -> str:
    """A noise flag as a badge of its kind ("cpu-load"), its full text on hover: the table stays narrow."""
    return f'<span class="badge warn" title="{escape(flag)}">{escape(flag.split(":")[0])}</span>'


def _device_table(device: DeviceSummary, baseline: str) -> str:
    head = ["target", "ran as", "batch", "setup", "p50 ms", "p90 ms", "p99 ms", "e2e p50 ms", "img/s"]
    head += ["size MB", "mAP50-95", "mAP50", f"Δ mAP50-95 vs {baseline}"]
    head += [f"speed-up vs unpruned, else {baseline}", "flags"]
    header = _header(head, {"target", "ran as", "flags"})
    body = []
    for row in device.rows:
        r = row.result
        e2e = r.e2e_latency_ms.p50 if r.e2e_latency_ms else None
        flags = "".join(_flag(f) for f in r.flags)
        cells = [
            _target_cell(row),
            _precision_cell(row),
            f"<td>{r.batch}</td>",
            f"<td>{escape(setup_text(r))}</td>",
            *(f"<td>{fmt(v)}</td>" for v in (r.latency_ms.p50, r.latency_ms.p90, r.latency_ms.p99, e2e)),
            f"<td>{fmt(r.throughput_ips, digits=1)}</td>",
            f"<td>{fmt(r.size_mb)}</td>",
            f"<td>{escape(map_text(r))}</td>",
            f"<td>{fmt(r.map50, digits=4)}</td>",
            f"<td>{_delta(row.map_delta)}</td>",
            f"<td>{fmt_ratio(row.speedup)}</td>",
            f'<td class="l flags">{flags}</td>',
        ]
        body.append(f'<tr class="{"pareto" if row.pareto else ""}">{"".join(cells)}</tr>')
    table = f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f"<div class='scroll'>{table}</div>"


def _gain_row(gain: SourceGain) -> str:
    """The target left-aligned; the mAP change red when pruning cost mAP, green when it gained."""
    points = gain.map_points
    change = "" if points is None or round(points, 2) == 0 else ("loss" if points < 0 else "gain")
    css = {"target": "l", "Δ mAP50-95 (points)": change}
    texts = zip(GAIN_HEADER, gain_cells(gain), strict=True)
    cells = (f'<td class="{css.get(header, "")}">{escape(text)}</td>' for header, text in texts)
    return f"<tr>{''.join(cells)}</tr>"


def _gain_table(device: DeviceSummary) -> str:
    """What pruning bought (speed, size) and cost (mAP) per engine: empty without the unpruned model."""
    if not device.gains:
        return ""
    rows = "".join(_gain_row(g) for g in device.gains)
    return (
        "<h3>Against the unpruned model</h3><p class='sub'>The same target/precision built from the "
        "source checkpoint: speed-up = unpruned p50 / p50; Δ mAP50-95 in points (hundredths); size ratio = "
        f"size / unpruned size.</p><div class='scroll'><table><thead><tr>{_header(GAIN_HEADER, {'target'})}"
        f"</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _device_section(device: DeviceSummary, baseline: str) -> str:
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in device.notes)
    plot_html = _img(plots.latency_vs_map(device), f"latency vs mAP50-95 on {device.name}")
    plot_html += _img(plots.latency_cdf(device), f"latency distribution on {device.name}")
    return (
        f"<section><h2>{escape(device.name)}</h2>{_fingerprint(device.fingerprint)}"
        f"<p class='sub'>Model: {escape(models_text(device.rows))}. "
        f"mAP on {escape(measured_on(device.rows))}; latency is model-only "
        f"unless marked e2e (pre + infer + post, NMS at {escape(device.e2e_nms)}; mAP at conf 0.001, "
        f"multi-label); ★ marks the latency/mAP Pareto front.</p>"
        f"{notes}{_device_table(device, baseline)}{_gain_table(device)}"
        f"<div class='plots'>{plot_html}</div></section>"
    )


def _story_section(stories: dict[str, list[dict[str, Any]]]) -> str:
    if not stories:
        return ""
    parts = ["<section><h2>The pipeline's story</h2>"]
    for model, story in stories.items():
        first = story[0]
        rows = []
        for step in story:
            params, gflops = step.get("params"), step.get("gflops")
            kept = (
                fmt(100 * gflops / first["gflops"], "%", digits=1) if gflops and first.get("gflops") else "—"
            )
            rows.append(
                f"<tr><td class='l'>{escape(str(step.get('stage', '?')))}</td>"
                f"<td>{fmt(params / 1e6 if params else None, digits=3)}</td><td>{fmt(gflops)}</td>"
                f"<td>{kept}</td><td>{fmt(step.get('map50_95'), digits=4)}</td></tr>"
            )
        parts.append(
            f"<h3>{escape(model)}</h3><table><thead><tr><th class='l'>stage</th><th>params (M)</th>"
            f"<th>GFLOPs</th><th>GFLOPs kept</th><th>mAP50-95</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            f"<div class='plots'>{_img(plots.stage_story(model, story), f'stage story of {model}')}</div>"
        )
    parts.append("</section>")
    return "".join(parts)


def _versions(results: list[Result]) -> str:
    versions: dict[str, set[str]] = {}
    for result in results:
        for library, version in result.versions.items():
            versions.setdefault(library, set()).add(version)
    return ", ".join(f"{escape(k)} {escape('/'.join(sorted(v)))}" for k, v in sorted(versions.items()))


def report_html(
    title: str,
    devices: list[DeviceSummary],
    stories: dict[str, list[dict[str, Any]]],
    results: list[Result],
    baseline: str,
    generated_at: str,
    search: dict[str, Any] | None = None,
) -> str:
    body = "".join(_device_section(d, baseline) for d in devices) + _story_section(stories)
    if search is not None:
        body += search_html(
            search, _img(plots.search_front(search), "mAP against latency of every candidate")
        )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{escape(title)}</h1><p class='sub'>{len(results)} results on {len(devices)} device(s); "
        f"baseline {escape(baseline)}; generated {escape(generated_at)}</p>{body}"
        f"<footer>Library versions: {_versions(results) or 'not recorded'}</footer>"
        "</main></body></html>\n"
    )
