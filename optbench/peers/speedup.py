"""Each variant's speedup over the fastest peer that stays within an accuracy budget, in the same run.

Within one run, machine, device and shape, the peers whose accuracy drop is at most the budget compete; the
one with the lowest p50 is the bar. Every other variant within the budget gets `speedup_vs_peer` = that
peer's p50 / its own (above 1: faster than anything the peers offered); a variant beyond the budget gets
none, since it bought its speed with accuracy the budget does not allow.
"""

from __future__ import annotations

import pandas as pd

DEFAULT_BUDGET_POINTS = 1.0
GROUP = ["recipe", "run_id", "machine", "device", "batch_size", "seq_len"]


def budget_words(budget_points: float) -> str:
    """The peer budget as the table and the gate say it: "1 point", "0.5 points"."""
    return f"{budget_points:g} point{'' if budget_points == 1 else 's'}"


def add_speedup_vs_peers(frame: pd.DataFrame, budget_points: float = DEFAULT_BUDGET_POINTS) -> pd.DataFrame:
    """`frame` (one row per variant, runtime and shape, with a boolean `peer` column) with `fastest_peer`,
    `fastest_peer_p50_ms` and `speedup_vs_peer` filled in where a run has peers within the budget."""
    frame = frame.reset_index(drop=True)  # groups are written back by index: it must be unique
    frame["fastest_peer"] = pd.Series(None, index=frame.index, dtype=object)
    frame["fastest_peer_p50_ms"] = float("nan")
    frame["speedup_vs_peer"] = float("nan")
    allowed = (frame["accuracy_drop"] <= budget_points) & frame["p50_ms"].notna()
    peer = frame["peer"].astype(bool)
    for _, group in frame.groupby(GROUP, sort=False, dropna=False):
        peers = group[peer[group.index] & allowed[group.index]]
        if peers.empty:
            continue
        best = peers.loc[peers["p50_ms"].idxmin()]
        ours = group[~peer[group.index] & allowed[group.index]]
        frame.loc[group.index, "fastest_peer"] = f"{best['variant']} on {best['runtime']}"
        frame.loc[group.index, "fastest_peer_p50_ms"] = best["p50_ms"]
        frame.loc[ours.index, "speedup_vs_peer"] = best["p50_ms"] / ours["p50_ms"]
    return frame
