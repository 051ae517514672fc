"""Errors with one-line messages, shown to the user without a traceback."""

from __future__ import annotations


class EdgeVerifyError(Exception):
    """Base class: its message is one line a user can act on."""

    exit_code = 2


class ImageError(EdgeVerifyError):
    """An image could not be read or decoded, or is unusable."""


class QualityError(ImageError):
    """A face was found but the quality gate refuses it (too small, blurred, turned away)."""


class NoFaceError(EdgeVerifyError):
    """No face was found in an image."""


class ModelError(EdgeVerifyError):
    """A model file is missing, corrupt or does not match its manifest."""


class GalleryError(EdgeVerifyError):
    """The gallery of enrolled people cannot be used as asked."""


class UnknownPersonError(GalleryError):
    """A name that is not enrolled."""


class ConfigError(EdgeVerifyError):
    """A configuration file or value is wrong."""
