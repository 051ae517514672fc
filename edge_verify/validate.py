"""Checks of numbers that come from callers (the Python API, the converter's settings), in Core so that
every layer can use them.

Pure: each check returns the clean value or raises ``ValueError`` with a one-line reason that the
caller wraps (argparse's type error, ``ConfigError`` naming the key). Whether a tau is looser than
the model was calibrated for is ``Manifest.tau_warning``.
"""

from __future__ import annotations

import math

TAU_MAX = 4.0  # squared L2 between unit vectors lies in [0, 4]: tau >= 4 accepts everyone


def finite_float(value: object) -> float:
    """``value`` as a finite float (not a bool, not NaN, not +-inf); ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, not {value!r}")
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"expected a number, not {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"must be a finite number, not {value!r}")
    return x


def check_tau(value: object) -> float:
    """A distance threshold: finite and 0 < tau < 4; ValueError with the reason otherwise (the caller
    names the setting: ``f"--tau: {exc}"``)."""
    tau = finite_float(value)
    if not 0.0 < tau < TAU_MAX:
        raise ValueError(f"must be between 0 and {TAU_MAX:g} (exclusive), not {value!r}: squared L2 distances "
                         "between encodings lie in [0, 4]")
    return tau

