"""Errors with one-line messages, shown to the user without a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .liveness import Liveness


class EdgeVerifyError(Exception):
    """Base class: its message is one line a user can act on. ``transient`` marks a fault that may pass
    by itself (a locked database, a full disk, a missing camera): the daemon retries those with backoff
    instead of exiting."""

    exit_code = 2

    def __init__(self, message: str = "", *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ImageError(EdgeVerifyError):
    """An image could not be read or decoded, or is unusable."""


class QualityError(ImageError):
    """A face was found but the quality gate refuses it (too small, blurred, turned away)."""


class NoFaceError(EdgeVerifyError):
    """No face was found in an image."""


class PresentationAttackError(EdgeVerifyError):
    """The face is not live (a photo or a screen, or too small to tell): a negative answer, exit 1."""

    exit_code = 1

    def __init__(self, message: str, liveness: Liveness | None = None) -> None:
        super().__init__(message)
        self.liveness = liveness  # the verdict that failed


class ModelError(EdgeVerifyError):
    """A model file is missing, corrupt or does not match its manifest."""


class GalleryError(EdgeVerifyError):
    """The gallery of enrolled people cannot be used as asked."""


class UnknownPersonError(GalleryError):
    """A name that is not enrolled."""


class EmptyGalleryError(GalleryError):
    """No one is enrolled yet: every face is unknown."""


class NoGalleryError(GalleryError):
    """A command that only reads the gallery found none (it never creates one)."""


class GalleryBusyError(GalleryError):
    """The gallery is locked by another process (SQLITE_BUSY): transient, try again; nothing is lost."""

    def __init__(self, message: str = "", *, transient: bool = True) -> None:
        super().__init__(message, transient=transient)


class EnrolmentError(GalleryError):
    """An enrolment refused or not finished (nothing was enrolled): photos not of one person, a camera
    session that timed out or whose camera stopped."""


class StateError(EdgeVerifyError):
    """The state directory or a file in it is not private and cannot be made so, or is not a file."""


class ConfigError(EdgeVerifyError):
    """A configuration file or value is wrong."""


class ScheduleError(EdgeVerifyError):
    """An access schedule or validity date cannot be parsed."""


class SigningError(EdgeVerifyError):
    """The device signing key cannot be read or made, or a public key is malformed."""
