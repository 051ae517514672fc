"""Encodings on aarch64 against x86: the same 200 LFW faces through the product on both, then compared.

    python scripts/arm/encodings_check.py encode --out build/arm/enc-x86_64.npz      (on each architecture)
    python scripts/arm/encodings_check.py compare X86.npz ARM.npz --json bench/results/arm-encodings.json

``encode`` runs the whole product pipeline (``FaceVerifier.process``: YuNet, alignment, int8 encoder) on
each image and keeps the subject's encoding, box and landmarks. ``compare`` gives the cosine per face, the
landmark shift, and whether each decision at the manifest's tau is the same on both: the LFW pairs whose
two images are among the 200 (half same person, half not) and every pair of the 200 faces.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stages import cpu_features  # scripts/arm/stages.py, beside this file

N_FACES = 200
FOLD = 2  # LFW View 2 fold 2: not the fold that calibrated the int8 quantization


def pick(lfw: Path, n: int = N_FACES) -> tuple[list[str], list[tuple[str, str, bool]]]:
    """``n`` image names taken pair by pair (same person and different people in turn) from one fold, and
    the pairs whose two images are both among them."""
    from converter.lfw import image_path, read_pairs

    pairs = read_pairs(lfw / "pairs.txt", [FOLD])
    same = [p for p in pairs if p.same]
    diff = [p for p in pairs if not p.same]
    names: dict[str, None] = {}
    used: list[tuple[str, str, bool]] = []
    for p in itertools.chain.from_iterable(zip(same, diff, strict=False)):
        a = image_path(Path(), p.name1, p.i1).name
        b = image_path(Path(), p.name2, p.i2).name
        if len(names | dict.fromkeys((a, b))) > n:
            break
        names.update(dict.fromkeys((a, b)))
        used.append((a, b, p.same))
    return list(names), used


def encode(args: argparse.Namespace) -> int:
    from converter.faces import pick_subject
    from edge_verify.align import align_face
    from edge_verify.imageio import read_image
    from edge_verify.pipeline import FaceVerifier

    lfw = args.shared / "data" / "lfw"
    names, pairs = pick(lfw, args.faces)
    with tempfile.TemporaryDirectory() as state:
        fv = FaceVerifier(state_dir=state)
        enc = np.zeros((len(names), 128), np.float32)
        marks = np.zeros((len(names), 5, 2), np.float32)
        found = np.zeros(len(names), bool)
        crops = np.zeros((len(names), 112, 112, 3), np.uint8)
        for i, name in enumerate(names):
            image = read_image(lfw / "images" / name)
            res = fv.process(image)
            face = pick_subject([r.face for r in res.faces], image.shape)
            sub = next((r for r in res.faces if r.face is face), None)
            if sub is not None and sub.embedding is not None:
                enc[i], marks[i], found[i] = sub.embedding, sub.face.landmarks, True
                crops[i] = align_face(image, sub.face.landmarks)
            if (i + 1) % 25 == 0:
                print(f"  {i + 1}/{len(names)} faces", file=sys.stderr, flush=True)
        extra = {"crops": crops}
        if args.crops:  # the reference machine's own crops through this machine's encoder: the encoder alone
            ref_crops = np.load(args.crops)["crops"]
            extra = {"encoder_encodings": np.stack([fv.embedder.embed(c) for c in ref_crops])}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.out, **extra, names=np.array(names), encodings=enc, landmarks=marks, found=found,
                 pairs=np.array([f"{a} {b} {int(s)}" for a, b, s in pairs]), tau=np.float64(fv.tau),
                 model_sha256=np.array(fv.model_sha256), machine=np.array(platform.machine()),
                 interpreter=np.array(fv.embedder.interpreter),
                 qemu_cpu=np.array(os.environ.get("QEMU_CPU", "max" if platform.machine() == "aarch64" else "")),
                 features=np.array(" ".join(cpu_features())))
    print(f"{platform.machine()}: {int(found.sum())}/{len(names)} faces encoded -> {args.out}")
    return 0


def compare_one(ref: np.lib.npyio.NpzFile, arm: np.lib.npyio.NpzFile) -> dict:
    tau = float(ref["tau"])
    names = np.array([str(n) for n in ref["names"]])
    both = ref["found"] & arm["found"]
    a, b = ref["encodings"][both], arm["encodings"][both]
    cos = (a * b).sum(1)
    shift = np.abs(ref["landmarks"][both] - arm["landmarks"][both]).max(axis=(1, 2))

    def distances(e: np.ndarray) -> np.ndarray:
        d = ((e[:, None, :] - e[None, :, :]) ** 2).sum(-1)
        return d[np.triu_indices(len(e), 1)]

    da, db = distances(a), distances(b)
    index = {n: i for i, n in enumerate(names[both])}
    lfw_pairs = [(index[x], index[y], s == "1") for x, y, s in (str(p).split() for p in ref["pairs"])
                 if x in index and y in index]
    la = np.array([((a[i] - a[j]) ** 2).sum() for i, j, _ in lfw_pairs])
    lb = np.array([((b[i] - b[j]) ** 2).sum() for i, j, _ in lfw_pairs])
    truth = np.array([s for _, _, s in lfw_pairs])
    encoder_only = None
    if "encoder_encodings" in arm.files:  # x86's crops through the aarch64 encoder
        ec = (ref["encodings"][both] * arm["encoder_encodings"][both]).sum(1)
        encoder_only = {"min": round(float(ec.min()), 6), "mean": round(float(ec.mean()), 6),
                        "below_0_999": int((ec < 0.999).sum()),
                        "bit_identical": int((ref["encodings"][both] == arm["encoder_encodings"][both]).all(1).sum())}
    r: dict[str, Any] = {
        "machine": str(arm["machine"]), "qemu_cpu": str(arm["qemu_cpu"]), "features": str(arm["features"]),
        "interpreter": str(arm["interpreter"]),
        "same_model": str(ref["model_sha256"]) == str(arm["model_sha256"]),
        "faces": len(names), "faces_found_both": int(both.sum()),
        "faces_found_only_one": int((ref["found"] ^ arm["found"]).sum()),
        "cosine": {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6),
                   "below_0_999": int((cos < 0.999).sum()), "bit_identical": int((a == b).all(1).sum()),
                   "worst_face": str(names[both][int(np.argmin(cos))])},
        "encoder_only_cosine": encoder_only,
        "landmark_shift_px": {"max": float(f"{shift.max():.3g}"), "mean": float(f"{shift.mean():.3g}")},
        "tau": tau,
        "lfw_pairs": {"pairs": len(lfw_pairs), "same_person": int(truth.sum()),
                      "decisions_agree": int(((la < tau) == (lb < tau)).sum()),
                      "correct_x86": int(((la < tau) == truth).sum()),
                      "correct_aarch64": int(((lb < tau) == truth).sum()),
                      "max_distance_change": round(float(np.abs(la - lb).max()), 6)},
        "all_pairs": {"pairs": len(da), "decisions_agree": int(((da < tau) == (db < tau)).sum()),
                      "accepted_x86": int((da < tau).sum()), "accepted_aarch64": int((db < tau).sum()),
                      "max_distance_change": round(float(np.abs(da - db).max()), 6),
                      "nearest_to_tau": round(float(np.abs(da - tau).min()), 6)},
    }
    r["passed"] = bool(r["same_model"] and r["faces_found_only_one"] == 0 and r["cosine"]["min"] >= 0.999
                       and r["lfw_pairs"]["decisions_agree"] == r["lfw_pairs"]["pairs"]
                       and r["all_pairs"]["decisions_agree"] == r["all_pairs"]["pairs"])
    return r


def compare(args: argparse.Namespace) -> int:
    ref = np.load(args.reference)
    runs = []
    for path in args.others:
        other = np.load(path)
        if list(ref["names"]) != list(other["names"]):
            print(f"{path}: not the same images as {args.reference}", file=sys.stderr)
            return 2
        runs.append(compare_one(ref, other))
    report = {
        "what": "encodings of the same LFW faces (View 2 fold 2) through the product (YuNet, alignment, int8 "
                "encoder) on x86_64 and on emulated aarch64 (Debian bookworm arm64 under qemu-user), decisions "
                "at the manifest's tau",
        "reference": {"machine": str(ref["machine"]), "interpreter": str(ref["interpreter"])},
        "model_sha256": str(ref["model_sha256"]),
        "runs": runs,
        "passed": all(r["passed"] for r in runs),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    for r in runs:
        c, lp, al, eo = r["cosine"], r["lfw_pairs"], r["all_pairs"], r["encoder_only_cosine"]
        if eo:
            print(f"aarch64 {r['qemu_cpu']}, the encoder alone on x86's crops: cosine min {eo['min']:.6f} "
                  f"mean {eo['mean']:.6f} ({eo['bit_identical']} bit-identical)")
        print(f"aarch64 {r['qemu_cpu']} vs x86_64, {r['faces_found_both']} LFW faces: cosine min {c['min']:.6f} "
              f"mean {c['mean']:.6f} ({c['bit_identical']} bit-identical); decisions at tau {r['tau']:.4f} agree "
              f"on {lp['decisions_agree']}/{lp['pairs']} LFW pairs and {al['decisions_agree']}/{al['pairs']} "
              f"pairs of faces -> {'PASSED' if r['passed'] else 'FAILED'}")
    return 0 if report["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode", help="encode the faces on this machine")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--faces", type=int, default=N_FACES)
    e.add_argument("--crops", type=Path, help="also encode the aligned crops of this reference run")
    e.add_argument("--shared", type=Path, default=Path(os.environ.get("EDGE_VERIFY_SHARED", "../shared")))
    c = sub.add_parser("compare", help="compare two runs, write the JSON report")
    c.add_argument("reference", type=Path)
    c.add_argument("others", type=Path, nargs="+", help="runs on aarch64 (one per qemu CPU model)")
    c.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    return encode(args) if args.cmd == "encode" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
