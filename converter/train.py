"""Train a face encoder with the triplet loss: from scratch, from an imported model, or distilled.

    python -m converter.train --data lfw --folds 1-5 --extra-dir ../shared/data/extended_yaleb \\
        --mining batch_hard --margin 0.2 --epochs 20 --steps 200 --P 16 --K 4 --out build/scratch.keras

Batches are P people x K augmented crops; the loss is the triplet loss (``converter.losses``), plus
with ``--teacher`` a distillation term (squared L2 between the student's and the teacher's
encodings of the same crop, precomputed on the unaugmented crops). After every epoch a fixed probe
batch is encoded in inference mode (``training=False``): its mean pairwise distance and spread are
logged, and training stops with a clear message when all encodings have collapsed to one point (the
BatchNorm trap: batch statistics look fine in training mode while the moving statistics make every
face the same). A checkpoint (weights + optimizer state) is written after every epoch; ``--resume``
continues from it, and batches depend only on (seed, epoch, step), so a resumed run is the same run.

Writes ``OUT`` (the ``.keras`` model, no optimizer) and ``OUT.train.json`` (the training record the
exporter puts into the manifest). Exit codes: 0 done, 2 bad input, 3 training failed (collapse, NaN).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from converter.data import (
    NO_AUGMENT,
    Augment,
    DataError,
    FaceSet,
    PKSampler,
    default_cache_dir,
    load_bundle,
    load_folder,
    load_lfw,
    save_bundle,
)
from converter.errors import ConverterError
from converter.lfw import parse_folds
from edge_verify.validate import finite_float

log = logging.getLogger(__name__)

COLLAPSE_DISTANCE = 1e-3  # mean pairwise squared L2 of the probe batch below this: collapsed
Arch = Literal["mobilefacenet", "tiny"]
Mining = Literal["batch_all", "batch_hard", "semi_hard"]


class TrainingError(ConverterError):
    """Training cannot go on (one-line message); exit code 3."""

    exit_code = 3


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is told (the command line's options, one field each); checked when made."""

    data: str = "lfw"  # 'lfw' or a folder-per-person tree
    folds: str = "1-5"  # LFW folds to train on
    extra_dir: str | None = None
    holdout_extra: int = 0
    bundle: str | None = None
    save_bundle: str | None = None
    shared: str | None = None
    cache_dir: str | None = None
    arch: Arch = "mobilefacenet"
    width: float = 1.0
    init: str | None = None
    teacher: str | None = None
    distill_weight: float = 1.0
    mining: Mining = "batch_hard"
    margin: float = 0.2
    epochs: int = 20
    steps: int = 200
    P: int = 16
    K: int = 4
    lr: float = 1e-3
    warmup: float = 0.05
    freeze_bn: bool = False
    no_augment: bool = False
    seed: int = 0
    out: str = "build/encoder.keras"
    resume: bool = False
    time_limit: float = 0.0
    eval_folds: str | None = None
    collapse_after: int = 300
    workers: int = 1
    threads: int = 2
    jit: bool = False
    quiet: bool = False
    verbose: bool = False

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> ConverterError:
            return ConverterError(f"--{option.replace('_', '-')} {why}")

        for name, low in (("P", 2), ("K", 2), ("epochs", 1), ("steps", 1), ("workers", 1), ("threads", 1),
                          ("holdout_extra", 0), ("collapse_after", 0)):
            if getattr(self, name) < low:
                raise bad(name, f"must be at least {low}, not {getattr(self, name)}")
        for name, positive in (("lr", True), ("width", True), ("margin", False), ("distill_weight", False),
                               ("time_limit", False)):
            try:
                value = finite_float(getattr(self, name))
            except ValueError as exc:
                raise bad(name, str(exc)) from None
            if value < 0 or (positive and value == 0):
                raise bad(name, f"must be {'above' if positive else 'at least'} 0, not {value:g}")
        if not 0 <= finite_float(self.warmup) < 1:
            raise bad("warmup", f"is a fraction of the run, 0 <= warmup < 1, not {self.warmup:g}")
        if self.arch not in get_args(Arch) or self.mining not in get_args(Mining):
            raise ConverterError(f"unknown --arch {self.arch!r} or --mining {self.mining!r}")
        parse_folds(self.folds)  # LfwError (a ConverterError) names a bad list
        if self.eval_folds:
            parse_folds(self.eval_folds)

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> TrainConfig:
        """The config of parsed command-line options (extra attributes are ignored)."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


# ---------------------------------------------------------------- data


def load_data(cfg: TrainConfig) -> FaceSet:
    """All crops the run may use: training people and, for LFW, the other folds for evaluation."""
    cache = Path(cfg.cache_dir) if cfg.cache_dir else None
    if cfg.bundle:
        return load_bundle(Path(cfg.bundle))
    sets = []
    if cfg.data == "lfw":
        sets.append(load_lfw(Path(cfg.shared) if cfg.shared else None, cache, progress=True))
    else:
        sets.append(load_folder(Path(cfg.data), cache, source="data", progress=True))
    if cfg.extra_dir:
        sets.append(load_folder(Path(cfg.extra_dir), cache, source="extra", progress=True))
    return FaceSet.concat(sets)


def extra_holdout(fs: FaceSet, n: int) -> list[str]:
    """The last ``n`` people (by name) of the extra set, kept out of training for evaluation."""
    people = sorted({str(p) for p, s in zip(fs.person, fs.source, strict=True) if s == "extra"})
    return people[len(people) - n :] if n > 0 else []


def training_indices(fs: FaceSet, cfg: TrainConfig, holdout: list[str]) -> npt.NDArray[np.int64]:
    if cfg.data == "lfw" or (cfg.bundle and (fs.source == "lfw").any()):
        idx = fs.select(parse_folds(cfg.folds), extra=True, exclude_people=holdout)
    else:
        idx = np.flatnonzero(~np.isin(fs.person, holdout))
    if idx.size == 0:
        raise DataError("no training images selected")
    return idx


def embed_crops(model_path: str, crops: npt.NDArray[np.uint8], batch: int = 128) -> npt.NDArray[np.float32]:
    """Encodings of unaugmented crops by a ``.keras`` model or a ``.tflite`` (via the runtime's Embedder)."""
    if model_path.endswith(".tflite"):
        from edge_verify.embed import Embedder

        emb = Embedder(model_path)
        return np.concatenate([emb.embed_batch(crops[i : i + batch]) for i in range(0, len(crops), batch)])
    from converter.layers import load_encoder

    model = load_encoder(model_path)
    return predict(model, crops.astype(np.float32), batch)


def teacher_encodings(fs: FaceSet, teacher: str, cache_dir: Path) -> npt.NDArray[np.float32]:
    """The teacher's encodings of every crop of ``fs``, cached by teacher file and crop keys."""
    import hashlib

    from edge_verify.models import sha256_file

    key = hashlib.sha1((sha256_file(teacher) + "\n".join(fs.keys)).encode()).hexdigest()[:16]
    path = cache_dir / f"teacher-{Path(teacher).stem}-{key}.npy"
    if path.is_file():
        return np.load(path)
    log.info("encoding %d crops with the teacher %s", len(fs), teacher)
    out = embed_crops(teacher, fs.crops).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


# ---------------------------------------------------------------- model helpers


def predict(model: Any, x: npt.NDArray[np.float32], batch: int = 128) -> npt.NDArray[np.float32]:
    """Encodings in inference mode (``model.predict``: compiled, ``training=False``)."""
    return np.asarray(model.predict(x.astype(np.float32), batch_size=batch, verbose=0), np.float32)


def spread(
    emb: npt.NDArray[np.float32], labels: npt.NDArray[np.int64] | None = None, margin: float = 0.2
) -> dict[str, float]:
    """Mean pairwise squared L2 distance of a batch of encodings, the mean per-dimension std, and with
    ``labels`` the batch-hard triplet loss of the batch."""
    d = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    n = len(emb)
    out = {
        "probe_mean_distance": float(d.sum() / max(n * (n - 1), 1)),
        "probe_dim_std": float(emb.std(0).mean()),
    }
    if labels is not None:
        from keras import ops

        from converter.losses import triplet_loss

        out["probe_loss"] = float(ops.convert_to_numpy(triplet_loss(labels, emb, margin, "batch_hard")))
    return out


def pair_accuracy(model: Any, fs: FaceSet, folds: list[int]) -> dict[str, Any]:
    """Our own LFW check: squared-L2 pair accuracy on ``folds``, threshold of each fold chosen on the
    others (the 10-fold protocol restricted to these folds); plain crops, no flip averaging."""
    from converter.metrics import best_threshold, kfold_accuracy

    pairs = fs.lfw_pairs(folds)
    if len(pairs) == 0:
        return {}
    used = np.unique(pairs[:, 1:3])
    emb = np.zeros((len(fs), predict(model, fs.crops[:1].astype(np.float32)).shape[1]), np.float32)
    emb[used] = predict(model, fs.crops[used].astype(np.float32))
    d = ((emb[pairs[:, 1]] - emb[pairs[:, 2]]) ** 2).sum(1)
    same = pairs[:, 3].astype(bool)
    accs, _ = kfold_accuracy(d, same, pairs[:, 0])
    return {
        "folds": folds,
        "pairs": len(pairs),
        "accuracy_mean": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "fold_accuracies": [float(a) for a in accs],
        "tau_all": best_threshold(d, same)[0],
        "method": "converter.train.pair_accuracy",
    }


def people_accuracy(
    model: Any, fs: FaceSet, people: list[str], seed: int = 0, n: int = 3000
) -> dict[str, Any]:
    """Pair accuracy on people held out of training: n genuine and n impostor pairs drawn at random,
    10-fold cross-validated threshold."""
    from converter.metrics import kfold_accuracy

    idx = np.flatnonzero(np.isin(fs.person, people))
    if len(people) < 2 or idx.size < 4:
        return {}
    emb = predict(model, fs.crops[idx].astype(np.float32))
    who = fs.person[idx]
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(idx), (2, 40 * n))
    keep = a != b
    a, b = a[keep], b[keep]
    same = who[a] == who[b]
    g, i = np.flatnonzero(same)[:n], np.flatnonzero(~same)[:n]
    sel = np.concatenate([g, i])
    d = ((emb[a[sel]] - emb[b[sel]]) ** 2).sum(1)
    accs, _ = kfold_accuracy(d, same[sel], np.arange(len(sel)) % 10)
    return {
        "people": people,
        "images": int(idx.size),
        "pairs": len(sel),
        "accuracy_mean": float(np.mean(accs)),
    }


# ---------------------------------------------------------------- training


def evaluate(model: Any, fs: FaceSet, cfg: TrainConfig, holdout: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"lfw": pair_accuracy(model, fs, parse_folds(cfg.eval_folds) if cfg.eval_folds else [])}
    if holdout:
        out["extra_held_out"] = people_accuracy(model, fs, holdout, cfg.seed)
    return out


def learning_rate(peak: float, progress: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction of the run, then cosine decay to 1% of ``peak``."""
    import math

    if progress < warmup:
        return peak * (0.05 + 0.95 * progress / warmup)
    t = min(1.0, (progress - warmup) / max(1.0 - warmup, 1e-9))
    return peak * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


def make_loss(mining: str, margin: float, distill_weight: float) -> tuple[Any, list[Any]]:
    """The Keras loss ``(y_true, y_pred)`` and metrics; ``y_true`` = [label, teacher encoding...]."""
    from converter.losses import distillation_loss, fraction_positive, triplet_loss

    def loss(y_true: Any, y_pred: Any) -> Any:
        value = triplet_loss(y_true[:, 0], y_pred, margin, mining)
        if distill_weight > 0:
            value = value + distill_weight * distillation_loss(y_pred, y_true[:, 1:])
        return value

    def frac_pos(y_true: Any, y_pred: Any) -> Any:
        return fraction_positive(y_true[:, 0], y_pred, margin)

    def triplet(y_true: Any, y_pred: Any) -> Any:
        return triplet_loss(y_true[:, 0], y_pred, margin, mining)

    def distill(y_true: Any, y_pred: Any) -> Any:
        return distillation_loss(y_pred, y_true[:, 1:])

    return loss, [frac_pos, triplet, distill] if distill_weight > 0 else [frac_pos]


def make_dataset(
    sampler: PKSampler, epoch: int, steps: int, teacher: npt.NDArray[np.float32] | None, workers: int
) -> Any:
    import keras

    class Batches(keras.utils.PyDataset):
        def __len__(self) -> int:
            return steps

        def __getitem__(self, step: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
            x, labels, idx = sampler.batch(epoch, step)
            y = labels[:, None].astype(np.float32)
            if teacher is not None:
                y = np.concatenate([y, teacher[idx]], axis=1)
            return x, y

    return Batches(workers=workers, use_multiprocessing=False, max_queue_size=max(4, 2 * workers))


def _checkpoint_paths(out: Path) -> tuple[Path, Path]:
    return out.with_name(out.name + ".ckpt.npz"), out.with_name(out.name + ".ckpt.json")


def save_checkpoint(out: Path, model: Any, state: dict[str, Any]) -> None:
    from keras import ops

    npz, meta = _checkpoint_paths(out)
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i}": ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)})
    tmp = npz.with_name(npz.name + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(npz)
    meta.write_text(json.dumps(state, indent=1))


def load_checkpoint(out: Path, model: Any) -> dict[str, Any] | None:
    npz, meta = _checkpoint_paths(out)
    if not (npz.is_file() and meta.is_file()):
        return None
    state: dict[str, Any] = json.loads(meta.read_text())
    with np.load(npz) as z:
        n_w = sum(1 for k in z.files if k.startswith("w"))
        model.set_weights([z[f"w{i}"] for i in range(n_w)])
        model.optimizer.build(model.trainable_variables)
        opt_vars = model.optimizer.variables
        if sum(1 for k in z.files if k.startswith("o")) != len(opt_vars):
            raise TrainingError(
                f"{npz}: optimizer state does not match this model; delete it or drop --resume"
            )
        for i, v in enumerate(opt_vars):
            v.assign(z[f"o{i}"])
    return state


def build_model(cfg: TrainConfig) -> Any:
    from converter.model import build_encoder, tiny_encoder

    if cfg.init:
        from converter.layers import load_encoder

        return load_encoder(cfg.init)
    if cfg.arch == "tiny":
        return tiny_encoder()
    return build_encoder(cfg.width)


def _tools() -> dict[str, str]:
    import keras

    tools = {"keras": keras.__version__, "backend": keras.backend.backend(), "numpy": np.__version__}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tools["tensorflow"] = tf.__version__
    return tools


def write_bundle(cfg: TrainConfig, path: Path) -> None:
    """Save every crop the run could use (all LFW folds, the extra set, with ``--teacher`` the teacher's
    encodings) as one compact file at ``path``, to train where the photos and the detector are not."""
    fs = load_data(cfg)
    if cfg.teacher and fs.teacher is None:
        fs.teacher = teacher_encodings(fs, cfg.teacher, Path(cfg.cache_dir or default_cache_dir()))
    save_bundle(path, fs)
    log.info("wrote %s: %d crops of %d people", path, len(fs), len(set(fs.person.tolist())))


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run the training described by ``cfg``; returns the training record (also written as JSON)."""
    import keras

    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    started = time.monotonic()

    fs = load_data(cfg)
    holdout = extra_holdout(fs, cfg.holdout_extra)
    idx = training_indices(fs, cfg, holdout)
    augment = NO_AUGMENT if cfg.no_augment else Augment()
    sampler = PKSampler(fs, idx, cfg.P, cfg.K, augment, cfg.seed)
    log.info(
        "training on %d images of %d people (P=%d x K=%d)%s",
        sampler.images,
        len(sampler.people),
        cfg.P,
        cfg.K,
        f"; held out: {', '.join(holdout)}" if holdout else "",
    )

    teacher = None
    distill_weight = 0.0
    if cfg.teacher:
        if fs.teacher is None:
            fs.teacher = teacher_encodings(fs, cfg.teacher, Path(cfg.cache_dir or default_cache_dir()))
        else:
            log.info("teacher encodings of %s taken from the bundle", cfg.teacher)
        teacher = fs.teacher.astype(np.float32)
        distill_weight = cfg.distill_weight

    model = build_model(cfg)
    if cfg.freeze_bn:
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False  # Keras 3: a frozen BatchNorm also runs in inference mode
    loss, metrics = make_loss(cfg.mining, cfg.margin, distill_weight)
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.lr),
        loss=loss,
        metrics=metrics,
        jit_compile=True if cfg.jit else "auto",
    )

    # probe: 2 unaugmented crops of each of the first 32 training people, encoded in inference mode
    probe_idx = np.concatenate([g[:2] for g in sampler.groups[:32]])
    probe = fs.crops[probe_idx].astype(np.float32)
    probe_labels = np.concatenate([np.full(len(g[:2]), i) for i, g in enumerate(sampler.groups[:32])])

    def probe_spread() -> dict[str, float]:
        return spread(predict(model, probe), probe_labels, cfg.margin)

    state: dict[str, Any] = {"epoch": 0, "steps_done": 0, "history": []}
    if cfg.resume:
        loaded = load_checkpoint(out, model)
        if loaded is None:
            log.info("no checkpoint beside %s: starting afresh", out)
        else:
            state = loaded
            log.info("resumed after epoch %d (%d steps)", state["epoch"], state["steps_done"])
    initial = probe_spread()
    log.info(
        "probe before: mean pairwise distance %.3f, per-dim std %.4f",
        initial["probe_mean_distance"],
        initial["probe_dim_std"],
    )

    before: dict[str, Any] = {}
    if cfg.init and cfg.eval_folds and not cfg.resume:
        before = evaluate(model, fs, cfg, holdout)
        log.info("evaluation before training: %s", json.dumps(before))
    train_start = time.monotonic()
    deadline = train_start + cfg.time_limit if cfg.time_limit else None
    stop = {"time": False}

    class Deadline(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if deadline is not None and time.monotonic() > deadline:
                stop["time"] = True
                self.model.stop_training = True

    class Steps(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.n = batch + 1

    verbose = 1 if sys.stderr.isatty() and not cfg.quiet else 2
    logs: dict[str, Any] = {}
    while state["epoch"] < cfg.epochs and not stop["time"]:
        epoch = state["epoch"]
        steps_cb = Steps()
        progress = epoch / cfg.epochs
        if cfg.time_limit:
            progress = max(progress, (time.monotonic() - train_start) / cfg.time_limit)
        lr = learning_rate(cfg.lr, progress, cfg.warmup)
        model.optimizer.learning_rate.assign(lr)
        log.info("epoch %d/%d, learning rate %.2e", epoch + 1, cfg.epochs, lr)
        hist = model.fit(
            make_dataset(sampler, epoch, cfg.steps, teacher, cfg.workers),
            epochs=epoch + 1,
            initial_epoch=epoch,
            verbose=verbose,
            callbacks=[Deadline(), steps_cb],
        )
        logs = {k: float(v[-1]) for k, v in hist.history.items()}
        if not np.isfinite(logs.get("loss", 0.0)):
            raise TrainingError(f"loss became {logs.get('loss')} in epoch {epoch + 1}: lower --lr")
        logs.update(probe_spread())
        state["steps_done"] += steps_cb.n
        state["epoch"] = epoch + 1 if steps_cb.n >= cfg.steps else epoch
        state["history"].append(
            {
                "epoch": epoch + 1,
                "steps": steps_cb.n,
                "lr": lr,
                **logs,
                "elapsed_s": round(time.monotonic() - started, 1),
            }
        )
        log.info(
            "epoch %d: loss %.4f, positive triplets %.3f, probe mean distance %.3f, per-dim std %.4f",
            epoch + 1,
            logs.get("loss", float("nan")),
            logs.get("frac_pos", float("nan")),
            logs["probe_mean_distance"],
            logs["probe_dim_std"],
        )
        save_checkpoint(out, model, state)
        if logs["probe_mean_distance"] < COLLAPSE_DISTANCE and state["steps_done"] >= cfg.collapse_after:
            raise TrainingError(
                "all encodings collapsed to one point (probe mean distance "
                f"{logs['probe_mean_distance']:.2e} in inference mode): the BatchNorm trap or too high "
                "a learning rate; lower --lr, raise --P, or check the data"
            )
    if stop["time"]:
        log.info("time limit of %d s reached after %d steps", cfg.time_limit, state["steps_done"])

    clean = type(model).from_config(model.get_config())  # same layers, no optimizer or loss
    clean.set_weights(model.get_weights())
    clean.save(out)
    record: dict[str, Any] = {
        "schema": 1,
        "model": {
            "file": out.name,
            "name": model.name,
            "parameters": int(model.count_params()),
            "arch": "init" if cfg.init else cfg.arch,
            "width": cfg.width,
        },
        "data": {
            "source": cfg.bundle or cfg.data,
            "extra_dir": cfg.extra_dir,
            "lfw_folds_used": parse_folds(cfg.folds) if (fs.source == "lfw").any() else [],
            "extra_held_out": holdout,
            "images": sampler.images,
            "people": len(sampler.people),
            "augment": None if cfg.no_augment else Augment().__dict__,
        },
        "init": cfg.init,
        "teacher": cfg.teacher,
        "hyper": {
            "mining": cfg.mining,
            "margin": cfg.margin,
            "P": cfg.P,
            "K": cfg.K,
            "lr": cfg.lr,
            "warmup_fraction": cfg.warmup,
            "freeze_bn": cfg.freeze_bn,
            "epochs": cfg.epochs,
            "steps_per_epoch": cfg.steps,
            "seed": cfg.seed,
            "distill_weight": distill_weight,
            "time_limit_s": cfg.time_limit,
            "optimizer": "adam; linear warm-up, then per-epoch cosine decay (epochs or time limit)",
        },
        "steps_done": state["steps_done"],
        "epochs_done": state["epoch"],
        "stopped_by_time_limit": stop["time"],
        "final": {**logs, "probe_before": initial},
        "history": state["history"],
        "time_s": round(time.monotonic() - started, 1),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "tools": _tools(),
    }
    if cfg.eval_folds:
        record["evaluation"] = evaluate(clean, fs, cfg, holdout)
        if before:
            record["evaluation_before"] = before
        log.info("evaluation: %s", json.dumps(record["evaluation"]))
    out.with_name(out.stem + ".train.json").write_text(json.dumps(record, indent=1))
    log.info("wrote %s and %s", out, out.with_name(out.stem + ".train.json"))
    return record


def parser() -> argparse.ArgumentParser:
    """The command line; every default is TrainConfig's."""
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m converter.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", help="'lfw' or a folder-per-person tree")
    p.add_argument("--folds", help=f"LFW folds to train on (default {d.folds})")
    p.add_argument("--extra-dir", help="another folder-per-person tree to train on (e.g. extended_yaleb)")
    p.add_argument("--holdout-extra", type=int, help="keep the last N extra people out of training")
    p.add_argument("--bundle", help="a face-set bundle (.npz from converter.data.save_bundle) instead of photos")
    p.add_argument("--save-bundle", metavar="PATH", help="write the data (+ teacher encodings) as a bundle, then stop")
    p.add_argument("--shared", help="shared data folder (default $EDGE_VERIFY_SHARED or ../shared)")
    p.add_argument("--cache-dir", help=f"crop cache (default {default_cache_dir()})")
    p.add_argument("--arch", choices=get_args(Arch))
    p.add_argument("--width", type=float, help="channel multiplier of the encoder")
    p.add_argument("--init", help="start from this .keras encoder (fine-tuning)")
    p.add_argument("--teacher", help="distil from this encoder (.keras or .tflite)")
    p.add_argument("--distill-weight", type=float)
    p.add_argument("--mining", choices=get_args(Mining))
    p.add_argument("--margin", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps", type=int, help="steps per epoch")
    p.add_argument("--P", type=int, help="people per batch")
    p.add_argument("--K", type=int, help="images per person per batch")
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup", type=float, help=f"warm-up, a fraction of the run (default {d.warmup})")
    p.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm layers frozen (fine-tuning)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument("--out")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    p.add_argument("--time-limit", type=float, help="stop after this many seconds (0: none)")
    p.add_argument("--eval-folds", help="after training, LFW pair accuracy on these folds (e.g. 6-10)")
    p.add_argument("--collapse-after", type=int,
                   help="check for collapsed encodings once this many steps are done (BatchNorm statistics settle)")
    p.add_argument("--workers", type=int, help="threads preparing batches")
    p.add_argument("--threads", type=int, help="TensorFlow CPU threads")
    p.add_argument("--jit", action="store_true", help="compile the train step with XLA (TF) / jit")
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(**dataclasses.asdict(d))
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = TrainConfig.from_namespace(parser().parse_args(argv))
    except ConverterError as exc:  # bad settings: said before TensorFlow is even loaded
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(
        level=logging.DEBUG if cfg.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import cv2
    import keras

    cv2.setNumThreads(1)  # small images: OpenCV's own threads only oversubscribe the batch workers
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
            tf.config.threading.set_inter_op_parallelism_threads(cfg.threads)
        except RuntimeError:  # TensorFlow already running in this process (tests): keep its settings
            log.debug("TensorFlow threads already set")
    try:
        if cfg.save_bundle:
            write_bundle(cfg, Path(cfg.save_bundle))
        else:
            train(cfg)
    except (ConverterError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, ConverterError) else 2
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept; rerun with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
