"""The search's table and summary (`edgepipe search`), for the terminal, the HTML and the Markdown."""

from __future__ import annotations

from html import escape
from typing import Any

from core.families import FAMILY_NAMES
from pipeline.report.summary import fmt

HEADER = [
    "imgsz",
    "MACs",
    "precision",
    "GFLOPs",
    "p50 ms",
    "bound ms",
    "mAP50-95",
    "tuned",
    "speed-up vs MACs cut",
    "front",
    "meets?",
]


def _is_chosen(row: dict[str, Any], chosen: dict[str, Any] | None) -> bool:
    keys = ("imgsz", "ratio", "precision", "model")
    return chosen is not None and all(row.get(k) == chosen.get(k) for k in keys)


def several_models(search: dict[str, Any]) -> bool:
    """Whether the search compared several models (each row then names its model and family)."""
    return len({row.get("model", "") for row in search["candidates"]}) > 1


def model_text(row: dict[str, Any]) -> str:
    """ "synth-yolo26n (YOLO26)": a candidate's model and family."""
    family = FAMILY_NAMES.get(row.get("family") or "", row.get("family") or "")
    return f"{row.get('model', '')} ({family})" if family else row.get("model", "")


def map_label(search: dict[str, Any]) -> str:
    """ "mAP50-95", or "mAP50-95 (partial, N of M images)" when the candidates were scored on part of the
    split (`--map-images`): such a figure ranks candidates, it is not the model's mAP."""
    partial = [row for row in search["candidates"] if is_partial(row)]
    if not partial:
        return "mAP50-95"
    counts = sorted({row["map_images"] for row in partial})
    return f"mAP50-95 (partial, {'/'.join(map(str, counts))} of {partial[0]['map_total_images']} images)"


def is_partial(row: dict[str, Any]) -> bool:
    images, total = row.get("map_images"), row.get("map_total_images")
    return images is not None and total is not None and images < total


def pruning_gain(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """A pruned candidate's p50 speed-up against its cut in GFLOPs (MACs), both relative to the unpruned
    candidate of the same model, input size and precision: "1.10× vs 1.43×"."""

    def group(r: dict[str, Any]) -> tuple[str, int, str]:
        return r.get("model", ""), r["imgsz"], r["precision"]

    unpruned = [other for other in rows if other["ratio"] >= 1.0 and group(other) == group(row)]
    figures: list[float | None] = [r.get(key) for r in (row, *unpruned[:1]) for key in ("p50_ms", "gflops")]
    if row["ratio"] >= 1.0 or not unpruned or None in figures:
        return "—"
    p50, gflops, base_p50, base_gflops = (float(f or 0.0) for f in figures)
    return f"{base_p50 / p50:.2f}× vs {base_gflops / gflops:.2f}×"


def candidate_rows(search: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the candidate table, largest input and least pruned first; the winner marked ★.

    "bound ms" is the budget statistic's upper confidence bound after the monotone fit; "speed-up vs MACs
    cut" compares a pruned candidate with the unpruned one of its model, input size and precision. A search
    of several models starts each row with its model and family.
    """
    header = [*HEADER]
    header[5] = f"{search['budget']['statistic']} bound ms"
    header[6] = map_label(search)
    several = several_models(search)
    rows = []
    for row in search["candidates"]:
        mark = " ★" if _is_chosen(row, search.get("chosen")) else ""
        meets = "yes" if row["meets"] else "no"
        precision = row["precision"]
        if row.get("ran_precision") and row["ran_precision"] != precision:
            precision = f"{precision} (ran {row['ran_precision']})"
        rows.append(
            ([f"{model_text(row)}{mark}"] if several else [])
            + [
                f"{row['imgsz']}{'' if several else mark}",
                f"{row['ratio']:g}",
                precision,
                fmt(row.get("gflops")),
                fmt(row.get("p50_ms")),
                fmt(row.get("fitted_ms")),
                fmt(row.get("map50_95"), digits=4),
                fmt(row.get("finetuned_map50_95"), digits=4),
                pruning_gain(row, search["candidates"]),
                "●" if row.get("front") else "",
                meets if not row.get("error") else f"not built: {row['error']}",
            ]
        )
    return (["model"] if several else []) + header, rows


def row_score(row: dict[str, Any]) -> float | None:
    """A search.json row's mAP50-95 as the choice ranks it: fine-tuned when it was fine-tuned (the dict
    form of `CandidateRow.score`)."""
    tuned = row.get("finetuned_map50_95")
    return row.get("map50_95") if tuned is None else tuned


def describe(row: dict[str, Any] | None) -> str:
    if row is None:
        return "none meets the budget"
    what = f"{row['imgsz']} px, {row['ratio']:g} MACs, {row['precision']}"
    what = f"{model_text(row)}, {what}" if row.get("model") else what
    return f"{what}: mAP50-95 {fmt(row_score(row), digits=4)}, {fmt(row.get('fitted_ms'))} ms bound"


def summary_line(search: dict[str, Any]) -> str:
    budget, chosen = search["budget"], search.get("chosen")
    rule = (
        f"{search['confidence']:.0%} upper bound of {budget['statistic']} (monotone in the MACs) plus a "
        f"{search['margin']:.0%} margin"
    )
    where = f"Budget {budget['text']} on {search['target']} batch {search['batch']}"
    if chosen is None:
        return f"{where}: no candidate's {rule} meets it."
    knobs = search.get("single_knob") or {}
    alone = "; ".join(f"{name}: {describe(row)}" for name, row in knobs.items())
    return (
        f"{where}: {describe(chosen)} chosen, the highest measured mAP whose {rule} meets it. "
        f"One knob alone: {alone}."
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
