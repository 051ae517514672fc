"""The converter's one error root: every failure the user can act on is a ``ConverterError`` with a
one-line message; the commands' ``main`` prints it and exits with its ``exit_code``."""

from __future__ import annotations


class ConverterError(Exception):
    """Base of the converter's errors (one-line message). Exit code 2: bad input or settings."""

    exit_code = 2
