"""The door simulation's report: per-visit rates with their bounds, the table, the goals, the JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from edge_verify.security import DEFAULT_SECURITY


def upper95(k: int, n: int) -> float:
    """One-sided 95 % upper bound of a rate seen k times in n (Clopper-Pearson; 0 of n: 1 - 0.05^(1/n))."""
    if n == 0:
        return 1.0
    if k == 0:
        return 1.0 - 0.05 ** (1.0 / n)
    lo, hi = k / n, 1.0
    for _ in range(60):  # P(X <= k | p) = 0.05, bisection
        mid = (lo + hi) / 2
        cdf = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(mid)
                           + (n - i) * math.log1p(-mid)) for i in range(k + 1))
        lo, hi = (mid, hi) if cdf > 0.05 else (lo, mid)
    return hi


KEYS = ("frames/all", "frames/lfw", "frames/yaleb_front", "frames/yaleb_side", "photos/all")
EMPTY = {"enrolled_visits": 0, "enrolled_granted": 0, "enrolled_wrong_person": 0, "stranger_visits": 0,
         "strangers_granted": 0}


def summary_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for res in results:
        t, first = res["total"], res["draws"][0]
        row: dict[str, Any] = {"rule": res["rule"]["name"], "enrolled_from": res["enrol"], "tau": first["tau"],
                               "fmr_per_comparison": first["fmr_per_comparison"]}
        for key in KEYS:
            c, c1 = t.get(key, EMPTY), first.get(key, EMPTY)
            false_accepts = c["strangers_granted"] + c["enrolled_wrong_person"]
            row[key] = {
                "enrolled_granted": c["enrolled_granted"] / max(c["enrolled_visits"], 1),
                "enrolled_visits": c["enrolled_visits"],
                "wrong_person": c["enrolled_wrong_person"],
                "strangers_granted": c["strangers_granted"],
                "stranger_visits": c["stranger_visits"],
                "fpir": false_accepts / max(c["stranger_visits"], 1),
                "fpir_upper95": upper95(false_accepts, c["stranger_visits"]),
                "first_draw_strangers": [c1["strangers_granted"], c1["stranger_visits"]],
            }
        rows.append(row)
    return rows


def format_summary(rows: Sequence[dict[str, Any]]) -> str:
    out = [f"{'rule':<28} {'tau':>6}  {'enrolled granted':>16} {'LFW':>6} {'Y front':>7} {'Y side':>6} "
           f"{'wrong':>5}  {'strangers granted':>17} {'draw 1':>9}  {'photos: enrolled':>16} {'strangers':>9}"]
    for r in rows:
        f, fl, fy, fs, p = (r[k] for k in KEYS)
        d1 = "{}/{}".format(*f["first_draw_strangers"])
        out.append(
            f"{r['rule']:<28} {r['tau']:>6.3f}  {100 * f['enrolled_granted']:>15.2f}% "
            f"{100 * fl['enrolled_granted']:>5.1f}% {100 * fy['enrolled_granted']:>6.1f}% "
            f"{100 * fs['enrolled_granted']:>5.1f}% {f['wrong_person']:>5}  "
            f"{f['strangers_granted']:>6}/{f['stranger_visits']:<10} {d1:>9}  "
            f"{100 * p['enrolled_granted']:>15.2f}% {p['strangers_granted']:>3}/{p['stranger_visits']:<5}")
    return "\n".join(out)


def goals(rows: Sequence[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    row = next(r for r in rows if r["rule"] == DEFAULT_SECURITY and r["enrolled_from"] == 1)
    f = row["frames/all"]
    s1, n1 = f["first_draw_strangers"]
    return [
        {"goal": f"0 strangers granted in >= 1,000 stranger visits at the default level ({DEFAULT_SECURITY}), "
                 f"N = {size}, one photo each",
         "measured": f"{s1}/{n1} (first draw), {f['strangers_granted']}/{f['stranger_visits']} over all draws, "
                     f"{f['wrong_person']} enrolled visitors granted as someone else; per-visit FPIR "
                     f"{f['fpir']:.2e} (95 % upper bound {f['fpir_upper95']:.2e})",
         "met": s1 == 0 and n1 >= 1000 and f["wrong_person"] == 0},
        {"goal": ">= 98 % of enrolled visitors granted at the default level",
         "measured": f"{100 * f['enrolled_granted']:.2f} % of {f['enrolled_visits']} visits (LFW "
                     f"{100 * row['frames/lfw']['enrolled_granted']:.1f} %, Yale B front light "
                     f"{100 * row['frames/yaleb_front']['enrolled_granted']:.1f} %, side light "
                     f"{100 * row['frames/yaleb_side']['enrolled_granted']:.1f} %)",
         "met": f["enrolled_granted"] >= 0.98},
    ]


def compact(res: dict[str, Any]) -> dict[str, Any]:
    """A rule's result for the JSON: totals, the false accepts by pair of people, the tau of each draw."""
    total = dict(res["total"])
    pairs: dict[tuple[str, str, str], int] = {}
    for f in total.pop("false_accepts", []):
        key = (f["visitor"], f["granted_as"], f["source"])
        pairs[key] = pairs.get(key, 0) + 1
    top = sorted(pairs.items(), key=lambda kv: -kv[1])[:12]
    return {"rule": res["rule"], "enrolled_from": res["enrol"], "total": total,
            "false_accepts": [{"visitor": v, "granted_as": g, "source": s, "visits": n} for (v, g, s), n in top],
            "false_accept_pairs": len(pairs),
            "draws": [{"tau": d["tau"], "fmr_per_comparison": d["fmr_per_comparison"],
                       "comparisons": d["comparisons"], "strangers_granted": d["frames/all"]["strangers_granted"],
                       "stranger_visits": d["frames/all"]["stranger_visits"]} for d in res["draws"]]}
