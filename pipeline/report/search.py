"""The report's search section: the candidate table and the ratio-vs-latency plot of `edgepipe search`."""

from __future__ import annotations

from html import escape
from typing import Any

from pipeline.report.summary import fmt


def candidate_rows(search: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the candidate table, least pruned first; the chosen one marked ★."""
    stat = search["budget"]["statistic"]
    header = ["MACs ratio", "GFLOPs", "params (M)", "p50 ms", "p90 ms", f"{stat} bound ms", "fitted ms"]
    header.append("meets?")
    chosen = (search.get("chosen") or {}).get("ratio")
    rows = []
    for row in search["candidates"]:
        mark = " ★" if row["ratio"] == chosen else ""
        meets = "yes" if row["meets"] else ("—" if row.get("error") else "no")
        rows.append(
            [
                f"{row['ratio']:.3g}{mark}",
                fmt(row.get("gflops")),
                fmt(row["params"] / 1e6 if row.get("params") else None, digits=3),
                fmt(row.get("p50_ms")),
                fmt(row.get("p90_ms")),
                fmt(row.get("bound_ms")),
                fmt(row.get("fitted_ms")),
                meets if not row.get("error") else f"not built: {row['error']}",
            ]
        )
    return header, rows


def summary_line(search: dict[str, Any]) -> str:
    budget, chosen = search["budget"], search.get("chosen")
    what = f"ratio {chosen['ratio']} ({fmt(chosen.get('gflops'))} GFLOPs)" if chosen else "no candidate"
    return (
        f"Budget {budget['text']} on {search['target']}/{search['precision']} batch {search['batch']}: "
        f"{what} chosen, the least pruned whose {search['confidence']:.0%} upper bound of "
        f"{budget['statistic']} (monotone fit) plus a {search['margin']:.0%} margin meets it."
    )


def search_html(search: dict[str, Any], image: str) -> str:
    header, rows = candidate_rows(search)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<section><h2>Budget search</h2><p class='sub'>{escape(summary_line(search))}</p>"
        f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
        f"<div class='plots'>{image}</div></section>"
    )
