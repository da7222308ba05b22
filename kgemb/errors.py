"""User-facing errors: each names the input that was wrong and the fix."""

from __future__ import annotations


class KgembError(Exception):
    """Base of every error a user can cause; the CLI prints it as one line and exits with code 2."""


class InputError(KgembError):
    """A file, argument or value given to kgemb is malformed or unusable."""


class ConfigError(KgembError):
    """An option or environment setting is missing or contradicts another."""


class DependencyError(KgembError):
    """A program kgemb needs (Java, Maven, a model) is missing or unusable."""
