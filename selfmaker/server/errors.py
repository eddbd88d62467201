"""AWS-style errors, as the handlers import them: the definitions live in :mod:`selfmaker.errors`,
below the store, which raises them too."""

from ..errors import AWSError, already_exists, conflict, in_use, not_found, not_implemented, validation

__all__ = ["AWSError", "already_exists", "conflict", "in_use", "not_found", "not_implemented", "validation"]
