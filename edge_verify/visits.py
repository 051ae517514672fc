"""How the daemon matches the frames of a visit: the security level's tau, votes, fusion and margin.

- **Tau from risk** (``match.identify_point``): identify mode derives its per-comparison tau from the
  level's per-visit false-accept target, the number of comparisons a stranger's frame meets (every
  template, plus each person's mean template) and the k-of-n rule; claim mode (1:1) takes the 1:1 tau
  for the same target (``match.claim_point``). An explicit ``model.tau`` overrides both (``custom``).
- **Votes** (identify): each usable frame votes for its nearest person when nearer than the model's
  loosest calibrated tau (``Manifest.loosest_tau``: farther than that it is no one, and votes unknown).
- **Confirmation**: when k frames agree on a person, their encodings are fused and the fused distance
  must be under tau *and* beat the second-best person by the manifest's margin (``fusion.confirm``);
  otherwise the visit is ``unknown_face`` with reason ``no_match`` or ``ambiguous``.
- Claim mode: each frame votes for the claimed person when under the claim tau, else mismatch.

The templates are rebuilt, and tau derived again, whenever the gallery changes (another process enrols
or forgets someone), and the new operating point is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .decision import MISMATCH, UNKNOWN, Vote
from .errors import EmptyGalleryError, UnknownPersonError
from .fusion import Fusion, Templates, VisitDecision, confirm, frame_vote
from .match import OperatingPoint, claim_point, identify_point

if TYPE_CHECKING:
    from .gallery import GalleryMatrix
    from .models import Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Matching:
    """The templates of one gallery version and the taus derived for them."""

    matrix: GalleryMatrix
    templates: Templates
    identify: OperatingPoint | None  # None with an explicit tau
    tau: float  # identify mode
    claim_tau: float
    security: str  # the level, or "custom" for an explicit tau

    def state(self) -> dict[str, Any]:
        """For the ``state`` message and the log."""
        return {"security": self.security, "tau": round(self.tau, 4), "claim_tau": round(self.claim_tau, 4),
                "comparisons": self.templates.comparisons,
                "operating_point": self.identify.to_dict() if self.identify else None}


class VisitMatcher:
    """Votes and confirmations for the daemon's decision window, against the verifier's gallery."""

    def __init__(self, manifest: Manifest, matrix: Any, level: str, k: int, n: int,
                 tau: float | None = None) -> None:
        """``matrix()`` returns the gallery's current GalleryMatrix (cached by the gallery until it
        changes); ``tau``: an explicit override of the level."""
        self.manifest, self._matrix, self.level, self.k, self.n, self.explicit_tau = manifest, matrix, level, k, n, tau
        self.tau_vote = manifest.loosest_tau
        self._current: Matching | None = None

    def matching(self) -> Matching:
        """The templates and taus for the gallery as it is now (rebuilt when it changed)."""
        m = self._matrix()
        if self._current is not None and self._current.matrix is m:
            return self._current
        if not m.names:
            raise EmptyGalleryError("no one is enrolled yet: run `edge-verify enroll NAME PHOTO` first")
        templates = Templates.build(m)
        if self.explicit_tau is not None:
            cur = Matching(m, templates, None, self.explicit_tau, self.explicit_tau, "custom")
        else:
            points = self.manifest.operating_points
            ident = identify_point(points, self.level, templates.comparisons, self.k, self.n)
            claim_tau = claim_point(points, self.level, self.k, self.n).tau
            cur = Matching(m, templates, ident, ident.tau, claim_tau, self.level)
            if ident.extrapolated:
                log.info("security %s: tau %.4f lies beyond the strictest calibrated point (extrapolated, on the "
                         "safe side)", self.level, ident.tau)
        log.info("matching %d people (%d comparisons per frame): security %s, tau %.4f, claim tau %.4f",
                 len(m.names), templates.comparisons, cur.security, cur.tau, cur.claim_tau)
        self._current = cur
        return cur

    def state(self) -> dict[str, Any]:
        """The level, taus and operating point in use (EmptyGalleryError when no one is enrolled)."""
        return self.matching().state()

    def vote(self, ts: float, embedding: np.ndarray, claim: str | None, liveness: float | None) -> Vote:
        """One frame's vote (liveness attacks are handled by the caller). UnknownPersonError for a claim
        that is not enrolled."""
        cur = self.matching()
        t = cur.templates
        if claim is not None:
            idx = cur.matrix.index(claim)
            if idx is None:
                raise UnknownPersonError(f"{claim!r} is not enrolled")
            d = float(t.distances(embedding)[idx])
            return Vote(ts, claim if d < cur.claim_tau else MISMATCH, d, liveness)
        who, d = frame_vote(embedding, t, self.tau_vote)
        if who is None:
            return Vote(ts, UNKNOWN, d, liveness)
        return Vote(ts, t.names[who], d, liveness, embedding=embedding)

    def confirm(self, label: str, votes: list[Vote]) -> tuple[bool, float | None, str | None]:
        """k frames agreed on ``label`` (identify mode): (granted, fused distance, reason when not)."""
        cur = self.matching()
        idx = cur.templates.names.index(label) if label in cur.templates.names else None
        frames = [v.embedding for v in votes if v.embedding is not None]
        if idx is None or not frames:  # the person was forgotten meanwhile
            return False, None, "no_match"
        v = self.confirm_encodings(cur, np.stack(frames), idx)
        return v.accepted, v.distance, v.reason

    def confirm_encodings(self, cur: Matching, encodings: np.ndarray, idx: int) -> VisitDecision:
        """``fusion.confirm`` of encodings (one row per frame) that named person ``idx`` of ``cur``, with
        the manifest's margin and fusion at the level's tau."""
        return confirm(encodings, idx, cur.templates, cur.tau, self.manifest.margin, cast(Fusion, self.manifest.fusion))


def loose_tau_warning(tau: float, manifest: Manifest, k: int = 1, n: int = 1, name: str = "model.tau") -> str | None:
    """A warning when an explicit tau (the setting ``name``) accepts more than the loosest security level
    ("convenient") would, even with one person enrolled; else the manifest's own warning, or None."""
    convenient = identify_point(manifest.operating_points, "convenient", 1, k, n).tau
    if tau > convenient:
        return (f"{name} {tau:.4f} is looser than the 'convenient' security level ({convenient:.4f} with one "
                "person enrolled): a door with this tau lets strangers in more often than 1 visit in 100")
    return manifest.tau_warning(tau)
