"""The Pareto front of (cost, value) points: lower cost and higher value are better."""

from __future__ import annotations


def pareto_front(points: list[tuple[float, float]]) -> set[int]:
    """Indices of the points no other point beats on both lower x (latency) and higher y (mAP)."""
    front: set[int] = set()
    best_y = float("-inf")
    for i in sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1])):
        if points[i][1] > best_y:
            front.add(i)
            best_y = points[i][1]
    return front
