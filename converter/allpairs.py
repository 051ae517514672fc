"""Every pair of a face data set: FNMR at door-grade FMRs (1e-3 ... 1e-6), with 95 % intervals.

All images of a folder-per-person set (LFW: 7,701 images, ~29.6 M cross-person pairs) are encoded
once through the product (``converter.encodings``); every pair of images is compared. Same-person
pairs are genuine, the others impostor. At each target FMR the threshold tau is the largest one that
accepts at most ``floor(FMR * impostors)`` impostor pairs (accepting is ``d < tau``, as the runtime
decides; ``converter.metrics.tau_at_far``), and FNMR is the share of genuine pairs with ``d >= tau``.

Intervals: pairs are not independent (one lookalike pair of people gives many impostor pairs), so the
95 % intervals come from a bootstrap over people: people are drawn with replacement, each pair weighs
the product of how often its two people were drawn, and tau and FNMR are measured again on the
weighted pairs. Each point also says how many impostor pairs lie under tau and between how many
distinct pairs of people, which is what the figure actually rests on.

``run`` reports three label sets: every face as the data set labels it; only faces that pass the
quality gate; and, for LFW, every face with its people under two names merged (``lfw.ALIASES``), the
set the manifest's operating points come from (``--update-manifest``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import tau_from_sorted

REPORT_FMRS = (1e-3, 1e-4, 1e-5, 1e-6)
MANIFEST_FMRS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
TAIL = 1e-2  # impostor pairs kept with their people (for the bootstrap): this share, the lowest
BLOCK = 512
COARSE = 10  # a point resting on fewer impostor pairs than this is flagged


@dataclass(frozen=True)
class PairDistances:
    """Every genuine pair; every impostor distance (sorted); the lowest impostor pairs with their people."""

    genuine: np.ndarray  # (G,) float32
    genuine_person: np.ndarray  # (G,) person index of each genuine pair
    impostor: np.ndarray  # (I,) float32, ascending
    tail: np.ndarray  # (T,) float32, ascending: the lowest impostor distances
    tail_a: np.ndarray  # (T,) person index of the first image of each tail pair
    tail_b: np.ndarray  # (T,) and of the second
    images: np.ndarray  # (P,) images per person that were encoded
    people: list[str]
    left_out: int  # images without a (usable) face

    @property
    def n_impostor(self) -> int:
        return int(self.impostor.size)


def _blocks(n: int) -> Iterator[tuple[int, int]]:
    for i in range(0, n, BLOCK):
        yield i, min(n, i + BLOCK)


def _upper(v: np.ndarray, i0: int, i1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows i0..i1 against every later row: (row index, column index, squared L2), flattened."""
    d = np.maximum(2.0 - 2.0 * (v[i0:i1] @ v.T), 0.0)
    rows, cols = np.nonzero(np.arange(v.shape[0])[None, :] > np.arange(i0, i1)[:, None])
    return rows + i0, cols, d[rows, cols]


def all_pairs(vectors: np.ndarray, person: np.ndarray, people: Sequence[str], tail: float = TAIL) -> PairDistances:
    """Squared L2 of every pair of images with a face; two passes over blocks of rows so that only the
    lowest ``tail`` share of impostor pairs is kept with its people."""
    keep = np.all(np.isfinite(vectors), axis=1)
    v = np.ascontiguousarray(vectors[keep], np.float32)
    who = np.asarray(person)[keep]
    images = np.bincount(who, minlength=len(people))
    n_gen = int((images * (images - 1) // 2).sum())
    n = v.shape[0]
    n_imp = n * (n - 1) // 2 - n_gen
    impostor = np.empty(n_imp, np.float32)
    genuine = np.empty(n_gen, np.float32)
    genuine_person = np.empty(n_gen, np.int64)
    gi = ii = 0
    for i0, i1 in _blocks(n):
        r, c, d = _upper(v, i0, i1)
        same = who[r] == who[c]
        g = d[same]
        genuine[gi : gi + g.size], genuine_person[gi : gi + g.size] = g, who[r[same]]
        gi += g.size
        imp = d[~same]
        impostor[ii : ii + imp.size] = imp
        ii += imp.size
    impostor.sort()
    cut = impostor[min(n_imp - 1, int(np.ceil(tail * n_imp)))]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for i0, i1 in _blocks(n):
        r, c, d = _upper(v, i0, i1)
        low = (who[r] != who[c]) & (d <= cut)
        parts.append((d[low], who[r[low]], who[c[low]]))
    td = np.concatenate([p[0] for p in parts])
    order = np.argsort(td, kind="stable")
    return PairDistances(
        genuine,
        genuine_person,
        impostor,
        td[order],
        np.concatenate([p[1] for p in parts])[order],
        np.concatenate([p[2] for p in parts])[order],
        images,
        list(people),
        int((~keep).sum()),
    )


def tau_at_fmr(impostor_sorted: np.ndarray, fmr: float) -> float:
    """The largest tau accepting at most floor(fmr * I) impostor pairs (``metrics.tau_at_far``'s rule)."""
    return tau_from_sorted(impostor_sorted, fmr)


def fmr_at(impostor_sorted: np.ndarray, tau: float) -> float:
    return float(np.searchsorted(impostor_sorted, tau, side="left") / impostor_sorted.size)


def fnmr_at(genuine: np.ndarray, tau: float) -> float:
    return float(np.mean(genuine >= tau))


def bootstrap(pd: PairDistances, fmrs: Sequence[float], reps: int = 1000, seed: int = 0) -> np.ndarray:
    """(reps, len(fmrs), 2) array of (tau, FNMR) measured on people drawn with replacement."""
    rng = np.random.default_rng(seed)
    n_people = len(pd.people)
    present = np.flatnonzero(pd.images > 0)
    gen_per_person = pd.images * (pd.images - 1) / 2.0
    out = np.full((reps, len(fmrs), 2), np.nan)
    for b in range(reps):
        w = np.bincount(rng.choice(present, present.size), minlength=n_people).astype(np.float64)
        wn = w * pd.images
        total = (wn.sum() ** 2 - (wn**2).sum()) / 2.0  # impostor weight: pairs of distinct draws' images
        cum = np.cumsum(w[pd.tail_a] * w[pd.tail_b])
        gw = w[pd.genuine_person]
        gw_total = float((w * gen_per_person).sum())
        for j, f in enumerate(fmrs):
            idx = int(np.searchsorted(cum, f * total, side="right"))
            if idx >= cum.size:
                continue  # the kept tail is too short for this replicate (never for FMR << TAIL)
            tau = float(pd.tail[idx])
            out[b, j] = tau, float(gw[pd.genuine >= tau].sum() / gw_total) if gw_total else np.nan
    return out


def operating_point(pd: PairDistances, fmr: float, boot: np.ndarray | None = None, j: int = 0) -> dict[str, Any]:
    tau = tau_at_fmr(pd.impostor, fmr)
    under = pd.tail < tau
    pairs_of_people = {(min(a, b), max(a, b)) for a, b in zip(pd.tail_a[under], pd.tail_b[under], strict=True)}
    point: dict[str, Any] = {
        "fmr": fmr,
        "tau": tau,
        "fnmr": fnmr_at(pd.genuine, tau),
        "fmr_measured": fmr_at(pd.impostor, tau),
        "impostor_pairs_under_tau": int(np.searchsorted(pd.impostor, tau, side="left")),
        "people_pairs_under_tau": len(pairs_of_people),
        "genuine_pairs_rejected": int((pd.genuine >= tau).sum()),
    }
    if boot is not None:
        col = boot[:, j, :]
        col = col[np.isfinite(col[:, 1])]
        if col.size:
            point["fnmr_ci95"] = [float(v) for v in np.percentile(col[:, 1], [2.5, 97.5])]
            point["tau_ci95"] = [float(v) for v in np.percentile(col[:, 0], [2.5, 97.5])]
    return point


def report(
    pd: PairDistances, fmrs: Sequence[float] = REPORT_FMRS, reps: int = 1000, seed: int = 0,
    check_taus: Sequence[float] = ()
) -> dict[str, Any]:
    """FNMR at each FMR (with bootstrap intervals), the counts behind them, and the FMR of given taus."""
    boot = bootstrap(pd, fmrs, reps, seed) if reps else None
    return {
        "people": int((pd.images > 0).sum()),
        "images": int(pd.images.sum()),
        "images_left_out": pd.left_out,
        "pairs": {"genuine": int(pd.genuine.size), "impostor": pd.n_impostor},
        "bootstrap": {"over": "people", "replicates": reps, "seed": seed, "interval": "2.5-97.5 percentile"},
        "points": [operating_point(pd, f, boot, j) for j, f in enumerate(fmrs)],
        "taus": [
            {"tau": t, "fmr": fmr_at(pd.impostor, t), "fnmr": fnmr_at(pd.genuine, t),
             "impostor_pairs_under_tau": int(np.searchsorted(pd.impostor, t, side="left"))}
            for t in check_taus
        ],
        "distances": {"genuine_mean": float(pd.genuine.mean()), "impostor_mean": float(pd.impostor.mean())},
    }


def manifest_points(pd: PairDistances, fmrs: Sequence[float] = MANIFEST_FMRS) -> list[dict[str, Any]]:
    """The calibrated (FMR, tau) points the manifest keeps (``edge_verify.match.OperatingPoints``)."""
    points = []
    for f in fmrs:
        tau = tau_at_fmr(pd.impostor, f)
        points.append({"fmr": f, "tau": round(tau, 6), "fnmr": round(fnmr_at(pd.genuine, tau), 6),
                       "impostor_pairs_under_tau": int(np.searchsorted(pd.impostor, tau, side="left"))})
    return points


def det_curve(pd: PairDistances, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, FNMR) at log-spaced FMRs from 1/I to 1."""
    lo = np.log10(1.0 / pd.n_impostor)
    fmr = np.logspace(lo, 0, points)
    k = np.minimum(np.floor(fmr * pd.n_impostor + 1e-9).astype(np.int64), pd.n_impostor - 1)
    taus = pd.impostor[k]
    g = np.sort(pd.genuine)
    fnmr = 1.0 - np.searchsorted(g, taus, side="left") / g.size
    return k / pd.n_impostor, fnmr


def plot_det(curves: dict[str, PairDistances], reports: dict[str, dict[str, Any]], out: Path, title: str) -> None:
    """DET (FNMR against FMR, both log) down to 1e-6, with the 95 % intervals at the report points."""
    from .plots import figure

    with figure(out, (7, 5)) as (_, ax):
        for label, pd in curves.items():
            fmr, fnmr = det_curve(pd)
            ok = fmr > 0
            line = ax.loglog(fmr[ok], np.maximum(fnmr[ok], 0.5 / pd.genuine.size), label=label)[0]
            for p in reports[label]["points"]:
                if "fnmr_ci95" in p:
                    lo, hi = p["fnmr_ci95"]
                    ax.errorbar([p["fmr"]], [p["fnmr"]], yerr=[[p["fnmr"] - lo], [hi - p["fnmr"]]],
                                fmt="o", color=line.get_color(), capsize=3, ms=4)
            for t in reports[label].get("taus", []):
                ax.axvline(t["fmr"], color=line.get_color(), ls=":", lw=1, label=f"tau {t['tau']:.4f} ({label})")
        ax.set(xlabel="false match rate (FMR)", ylabel="false non-match rate (FNMR)", xlim=(1e-7, 1), title=title)


def format_table(label: str, r: dict[str, Any]) -> str:
    lines = [
        f"{label}: {r['people']} people, {r['images']} images ({r['images_left_out']} left out), "
        f"{r['pairs']['genuine']:,} genuine and {r['pairs']['impostor']:,} impostor pairs",
        f"{'FMR':>7}  {'tau':>7}  {'FNMR':>7}  {'95% interval':>17}  {'impostor pairs < tau':>21}  people pairs",
    ]
    for p in r["points"]:
        ci = p.get("fnmr_ci95")
        ci_text = f"{100 * ci[0]:.2f}-{100 * ci[1]:.2f} %" if ci else "-"
        coarse = "  (coarse: < 10 impostor pairs)" if p["impostor_pairs_under_tau"] < COARSE else ""
        lines.append(
            f"{p['fmr']:>7g}  {p['tau']:>7.4f}  {100 * p['fnmr']:>6.2f}%  {ci_text:>17}  "
            f"{p['impostor_pairs_under_tau']:>21,}  {p['people_pairs_under_tau']}{coarse}"
        )
    for t in r.get("taus", []):
        lines.append(f"tau {t['tau']:.4f}: FMR {t['fmr']:.2e} ({t['impostor_pairs_under_tau']:,} impostor pairs), "
                     f"FNMR {100 * t['fnmr']:.2f} %")
    return "\n".join(lines)


def run(args: Any) -> int:
    """``python -m converter.evaluate MODEL --all-pairs``: see the module docstring."""
    import json

    from edge_verify.models import resolve_encoder

    from . import lfw
    from .encodings import default_cache, encode_dataset, load_dataset
    from .evaluate import update_manifest

    root = args.people_dir or args.data or lfw.shared_dir() / "data" / "lfw"
    data = load_dataset(root)
    manifest = resolve_encoder(args.model)
    cache = args.cache or default_cache(root, f"{args.model.stem}-images")
    enc = encode_dataset(data, cache, model=args.model, threads=args.threads, progress=not args.quiet)
    fmrs = sorted({*REPORT_FMRS, args.far}, reverse=True)
    gated = np.where((enc.ok & enc.found)[:, None], enc.vectors, np.nan)
    label = {"as_published": f"{root.name}, every face", "quality_gated": f"{root.name}, quality gate passed"}
    sets = {"as_published": (enc.vectors, data), "quality_gated": (gated, data)}
    if set(data.persons) & set(lfw.ALIASES):  # LFW: also with its people under two names merged
        sets["aliases_merged"] = (enc.vectors, load_dataset(root, lfw.ALIASES))
        label["aliases_merged"] = f"{root.name}, every face, {len(lfw.ALIASES)} people under two names merged"
    pds, reports = {}, {}
    taus = sorted({manifest.tau, *args.check_tau})
    for key, (vectors, labelled) in sets.items():
        person, people = labelled.person_index()
        pds[key] = all_pairs(vectors, person, people)
        reports[key] = report(pds[key], fmrs, reps=args.bootstrap, seed=args.seed, check_taus=taus)
        print(format_table(label[key], reports[key]))
    main_key = "aliases_merged" if "aliases_merged" in sets else "as_published"
    pd, r = pds[main_key], reports[main_key]
    protocol = (f"{label[main_key]}: all pairs of {r['images']} images of {r['people']} people through "
                "FaceVerifier.process (subject: converter.faces.pick_subject), squared L2, accept d < tau")
    out = {"model": str(args.model), "model_sha256": manifest.sha256, "data": str(root), "protocol": protocol,
           "labels": {k: label[k] for k in sets}, **reports, "manifest_points": manifest_points(pd)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if args.plot:
        plot_det({label[k]: pds[k] for k in sets}, {label[k]: reports[k] for k in sets}, args.plot,
                 f"{args.model.name}: all pairs of {root.name}")
    if args.update_manifest:
        tau = tau_at_fmr(pd.impostor, args.far)
        source = (f"{protocol}: {r['pairs']['genuine']} genuine, {r['pairs']['impostor']} impostor pairs "
                  f"(python -m converter.evaluate {args.model.name} --all-pairs --update-manifest)")
        extra = {"operating_points": manifest_points(pd), "operating_points_source": source}
        path = update_manifest(args.model, tau, args.far, source, extra)
        print(f"wrote tau {tau:.4f} (FMR {args.far:g}) and {len(extra['operating_points'])} operating points to {path}")
    return 0
