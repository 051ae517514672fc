"""edge-verify: offline face verification at the door.

``from edge_verify import FaceVerifier`` is the Python API; the rest loads lazily so that
``import edge_verify`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["FaceVerifier", "__version__"]

if TYPE_CHECKING:
    from .pipeline import FaceVerifier


def __getattr__(name: str) -> Any:
    if name == "FaceVerifier":
        from .pipeline import FaceVerifier

        return FaceVerifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
