"""edge-verify: offline face verification at the door.

exit codes:
  0  success (verify: same person; identify: every face identified)
  1  a negative answer (verify: not the same person; identify: an unknown face;
     verify/identify: a face that is not live, e.g. a photo held to the camera;
     embed: some inputs could not be read)
  2  an error (bad input, no face, unknown person, empty gallery, bad model or config)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .cli_daemon import tau_value
from .errors import (
    ConfigError,
    EdgeVerifyError,
    EnrolmentError,
    ImageError,
    ModelError,
    NoFaceError,
    PresentationAttackError,
    QualityError,
)
from .security import DEFAULT_SECURITY, SECURITY_LEVELS

log = logging.getLogger("edge_verify")

EXIT_OK, EXIT_NO, EXIT_ERROR = 0, 1, 2


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and state")
    g.add_argument("--state-dir", type=Path, help="where the gallery lives (default: $EDGE_VERIFY_STATE_DIR, "
                   "else $STATE_DIRECTORY, else ~/.local/share/edge-verify)")
    g.add_argument("--model", help="bundled encoder name or a .tflite path (default: sface-int8)")
    g.add_argument("--tau", type=tau_value, help="distance threshold, 0 < tau < 4; default: the model's manifest")
    g.add_argument("--threads", type=int, help="interpreter threads (default: up to 4)")
    g.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")


def _security_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--security", choices=SECURITY_LEVELS, default=DEFAULT_SECURITY,
                   help="how sure to be, as the daemon's [decision] security: the tau is derived from the level "
                   f"and the gallery's size (default {DEFAULT_SECURITY}; --tau overrides it)")


def _liveness_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("liveness (presentation-attack detection, on by default)")
    g.add_argument("--no-liveness", action="store_true", help="do not check that faces are live")
    g.add_argument("--liveness-threshold", type=float, metavar="T",
                   help="a face is live when its liveness score is >= T (default: the bundled models' manifest)")
    g.add_argument("--liveness-min-face", type=float, metavar="PX",
                   help="faces smaller than PX (box side) are never counted live (default: the manifest's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edge-verify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from . import cli_console

    p = sub.add_parser("enroll", help="enrol a person from one or more photos, or from the camera (--camera)")
    p.add_argument("name")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--force", action="store_true",
                   help="enrol even when the quality gate refuses a face or the photos look like different people")
    cli_console.add_enroll_arguments(p)
    _common(p)

    p = sub.add_parser("verify", help="1:1: is the face in IMAGE the claimed person? (exit 0 yes, 1 no)")
    p.add_argument("--claim", required=True, metavar="NAME")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print the decision as JSON")
    _common(p)
    _security_option(p)
    _liveness_options(p)

    p = sub.add_parser("identify", help="1:N: who is the face in each IMAGE? (exit 1 if any is unknown)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=1, help="also list the K nearest people")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    _common(p)
    _security_option(p)
    _liveness_options(p)

    p = sub.add_parser("embed", help="detect, check and encode every face: one JSON line per IMAGE")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", default=True, help="JSON lines (the only format)")
    _common(p)
    _liveness_options(p)

    p = sub.add_parser("people", help="list or forget enrolled people")
    psub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = psub.add_parser("list", help="enrolled people and their number of templates")
    q.add_argument("--json", action="store_true")
    _common(q)
    q = psub.add_parser("forget", help="remove a person and their templates")
    q.add_argument("name")
    _common(q)
    q = psub.add_parser("check", help="pairs of enrolled people closer than the level's tau "
                        "(lookalikes, twins, one person enrolled twice); exit 1 if any")
    q.add_argument("--level", choices=SECURITY_LEVELS, default=DEFAULT_SECURITY,
                   help=f"security level whose identify tau is used (default {DEFAULT_SECURITY}); --tau overrides")
    q.add_argument("--json", action="store_true")
    _common(q)

    q = psub.add_parser("schedule", help="show, set or clear when a person may be granted (docs/DOOR.md)")
    q.add_argument("name")
    q.add_argument("windows", nargs="?", help="weekly windows in local time, e.g. \"Mon-Fri 07:00-19:00; Sat "
                   "09:00-13:00\"; \"any\" removes the windows")
    q.add_argument("--from", dest="valid_from", metavar="DATE", help="valid from YYYY-MM-DD[THH:MM]; '' removes it")
    q.add_argument("--until", dest="valid_until", metavar="DATE", help="valid through YYYY-MM-DD (or until "
                   "YYYY-MM-DDTHH:MM); '' removes it")
    q.add_argument("--clear", action="store_true", help="remove every restriction")
    _common(q)

    p = sub.add_parser("doctor", help="versions, interpreter, model self-test, cameras")
    _common(p)

    p = sub.add_parser("keys", help="the device's event-signing key")
    ksub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = ksub.add_parser("show", help="print the public key as one line of base64 (made if missing)")
    q.add_argument("--state-dir", type=Path, help="where the key lives (as for the other commands)")
    q.add_argument("--json", action="store_true", help="{\"key_id\": ..., \"public_key\": ...}")
    q.add_argument("--debug", action="store_true", help="show tracebacks")

    sub.add_parser("door", help="the lock controller: signed events to a relay (edge-verify door --help)",
                   add_help=False)

    p = sub.add_parser("web", help="the web console (people, events, live view, health)")
    cli_console.add_web_arguments(p)

    from . import cli_daemon

    p = sub.add_parser("run", help="the daemon: camera frames to MQTT access events")
    cli_daemon.add_run_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    p = sub.add_parser("check-config", help="validate a configuration file and exit")
    cli_daemon.add_check_config_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    return parser


def _verifier(args: argparse.Namespace, create_gallery: bool = False) -> Any:
    """A FaceVerifier; only enrolment creates a gallery (a mistyped --state-dir must not make one).
    Commands with liveness options check liveness unless --no-liveness."""
    from .liveness import LivenessSettings
    from .pipeline import FaceVerifier

    liveness = None
    if hasattr(args, "no_liveness") and not args.no_liveness:
        try:
            liveness = LivenessSettings(threshold=args.liveness_threshold, min_face_px=args.liveness_min_face)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    fv = FaceVerifier(model=args.model, state_dir=args.state_dir, tau=args.tau, num_threads=args.threads,
                      create_gallery=create_gallery, liveness=liveness, security=getattr(args, "security", None))
    if args.tau is not None:
        from .visits import loose_tau_warning

        if warning := loose_tau_warning(args.tau, fv.manifest, name="--tau"):
            log.warning("%s", warning)
    return fv


def _print_attack(args: argparse.Namespace, path: str, exc: PresentationAttackError, tau: float) -> None:
    """A face that is not live: one line (or one JSON object) saying why."""
    if args.json:
        live = exc.liveness.to_dict() if exc.liveness is not None else None
        print(json.dumps({"path": path, "accepted": False, "person": None, "distance": None, "tau": tau,
                          "candidates": [], "liveness": live, "reason": str(exc).removeprefix(f"{path}: ")}))
    else:
        print(f"{exc}")


def cmd_enroll(args: argparse.Namespace) -> int:
    if args.camera or args.new:
        from .cli_console import enroll_at_the_door

        return enroll_at_the_door(args, lambda: _verifier(args, create_gallery=True))
    if not args.images:
        raise ConfigError("give one or more IMAGE files, or --camera")
    from .cli_console import apply_config

    apply_config(args)
    fv = _verifier(args, create_gallery=True)
    try:
        n = fv.enroll(args.name, args.images, require_quality=not args.force, check_identity=not args.force)
    except QualityError as exc:
        raise QualityError(f"{exc} (nothing enrolled; --force enrols it anyway)") from None
    except EnrolmentError as exc:
        raise EnrolmentError(f"{exc} (--force enrols them anyway)") from None
    name = fv.gallery.resolve(args.name) or args.name.strip()
    from .cli_console import enrolled

    enrolled(args, name, n, "")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    fv = _verifier(args)
    try:
        d = fv.verify(args.claim, args.image)
    except PresentationAttackError as exc:
        _print_attack(args, args.image, exc, fv.decision_tau(claim=True))
        return EXIT_NO
    if args.json:
        print(json.dumps({"path": args.image, **d.to_dict()}))
    else:
        verdict = "same person" if d.accepted else "not the same person"
        print(f"{args.image}: {verdict} as {d.person!r} (distance {d.distance:.3f}, tau {d.tau:.3f})")
    return EXIT_OK if d.accepted else EXIT_NO


def cmd_identify(args: argparse.Namespace) -> int:
    fv = _verifier(args)
    status = EXIT_OK
    for path in args.images:
        try:
            d = fv.identify(path, top_k=args.top_k)
        except PresentationAttackError as exc:
            _print_attack(args, path, exc, fv.decision_tau())
            status = EXIT_NO if status == EXIT_OK else status
            continue
        except (ImageError, NoFaceError) as exc:
            if len(args.images) == 1:
                raise
            print(f"edge-verify: error: {exc}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        if not d.accepted and status == EXIT_OK:
            status = EXIT_NO
        if args.json:
            print(json.dumps({"path": path, **d.to_dict()}))
        else:
            who = d.person if d.accepted else "unknown" + (f" ({d.reason})" if d.reason else "")
            near = ", ".join(f"{p} {dist:.3f}" for p, dist in d.candidates)
            print(f"{path}: {who} (nearest: {near}; tau {d.tau:.3f})")
    return status


def cmd_embed(args: argparse.Namespace) -> int:
    fv = _verifier(args)
    status = EXIT_OK
    for path in args.images:
        record: dict[str, Any] = {"path": path, "faces": [], "error": None}
        try:
            record["faces"] = [f.to_dict() for f in fv.embed(path)]
            if not record["faces"]:
                record["error"] = "no face found"
        except EdgeVerifyError as exc:
            record["error"] = str(exc)
            status = EXIT_NO
        print(json.dumps(record), flush=True)
    return status


def cmd_people(args: argparse.Namespace) -> int:
    from .gallery import Gallery, default_state_dir
    from .models import resolve_encoder

    manifest = resolve_encoder(args.model)
    gallery = Gallery(args.state_dir or default_state_dir(), manifest.sha256, create=False)
    if args.action == "check":
        return _people_check(args, gallery, manifest)
    if args.action == "schedule":
        return _schedule(gallery, args)
    if args.action == "forget":
        from .snapshots import forget_person

        name = gallery.resolve(args.name) or args.name.strip()
        n = gallery.forget(args.name)
        snaps = forget_person(gallery.state_dir, name)
        print(f"forgot {name!r} ({n} template{'s' * (n != 1)}{f', {snaps} snapshots' if snaps else ''})")
        return EXIT_OK
    people = gallery.people()
    if args.json:
        print(json.dumps([{"name": p.name, "templates": p.templates, "created": p.created} for p in people]))
    elif not people:
        print(f"no one is enrolled ({gallery.path})")
    else:
        for p in people:
            print(f"{p.name}\t{p.templates} template{'s' * (p.templates != 1)}\tsince {p.created}")
    return EXIT_OK


def lookalike_tau(manifest: Any, matrix: Any, level: str, tau: float | None = None) -> float:
    """The tau people are checked against: ``tau`` when given, else the level's identify tau for this
    gallery (``match.identify_point``)."""
    from .fusion import Templates
    from .match import identify_point

    if tau is not None:
        return tau
    try:
        return identify_point(manifest.operating_points, level, Templates.build(matrix).comparisons).tau
    except ValueError as exc:  # e.g. a manifest with one calibrated point, looser than the level needs
        raise ModelError(f"{manifest.path}: {exc}") from None


def _people_check(args: argparse.Namespace, gallery: Any, manifest: Any) -> int:
    from .fusion import close_pairs

    matrix = gallery.matrix()
    tau = lookalike_tau(manifest, matrix, args.level, args.tau)
    pairs = close_pairs(matrix, tau)
    if args.json:
        print(json.dumps({"tau": round(tau, 4), "level": None if args.tau else args.level,
                          "pairs": [{"a": a, "b": b, "distance": round(d, 4)} for a, b, d in pairs]}))
    elif not pairs:
        print(f"no two of the {len(matrix.names)} enrolled people are closer than tau {tau:.3f}")
    else:
        for a, b, d in pairs:
            print(f"{a}\t{b}\tdistance {d:.3f} < tau {tau:.3f}")
        print(f"{len(pairs)} pair{'s' * (len(pairs) != 1)} closer than tau: lookalikes, twins or one person "
              "enrolled twice; a visit of one may be taken for the other", file=sys.stderr)
    return EXIT_NO if pairs else EXIT_OK


def _schedule(gallery: Any, args: argparse.Namespace) -> int:
    from .access import AccessRule, make_rule

    rule = gallery.access(args.name)
    if args.clear or args.windows is not None or args.valid_from is not None or args.valid_until is not None:
        old = AccessRule() if args.clear else rule
        windows = None if args.windows is None else ("" if args.windows.strip().lower() == "any" else args.windows)
        old_schedule, old_from, old_until = old.texts()
        rule = make_rule(old_schedule if windows is None else windows,
                         old_from if args.valid_from is None else args.valid_from,
                         old_until if args.valid_until is None else args.valid_until)
        gallery.set_access(args.name, rule)
    print(f"{gallery.resolve(args.name) or args.name.strip()}: {rule.describe()}")
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    from .signing import Signer
    from .statedir import default_state_dir

    signer = Signer.load_or_create(args.state_dir or default_state_dir())
    if args.json:
        print(json.dumps({"key_id": signer.key_id, "public_key": signer.public_b64()}))
    else:
        print(signer.public_b64())
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor

    return run_doctor(args)


def cmd_web(args: argparse.Namespace) -> int:
    from .cli_console import cmd_web as web

    return web(args)


COMMANDS = {"enroll": cmd_enroll, "verify": cmd_verify, "identify": cmd_identify, "embed": cmd_embed,
            "people": cmd_people, "doctor": cmd_doctor, "keys": cmd_keys,
            "web": cmd_web}


def _setup_logging(debug: bool, command: bool) -> None:
    from .logs import setup_logging

    setup_logging(debug=debug, level=logging.WARNING if command else None, command=command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["door"]:  # the lock controller runs with no model: none of the face layers are loaded
        from .door.cli import main as door_main

        return door_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    _setup_logging(debug, command=args.command in COMMANDS)
    try:
        if args.command in COMMANDS:
            return COMMANDS[args.command](args)
        from . import cli_daemon

        return int(cli_daemon.run(args) if args.command == "run" else cli_daemon.check_config(args))
    except EdgeVerifyError as exc:
        if debug:
            raise
        print(f"edge-verify: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line for the user; --debug shows the traceback
        if debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"edge-verify: internal error: {type(exc).__name__}: {first} (run with --debug for details)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
