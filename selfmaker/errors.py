"""AWS-style errors. Raise these anywhere; the protocol layer renders them per wire protocol.

A bottom module (it imports nothing of SelfMaker), so the store and every layer above may
raise them; :mod:`selfmaker.server.errors` is the same names, where the handlers import them from.
"""

from __future__ import annotations


class AWSError(Exception):
    """An error the client sees, with the code and status AWS would send."""

    # True on the error of a Create whose resource is there already (see already_exists): code that
    # makes things once asks this, since the code (ValidationException, ResourceInUse...) and the
    # words differ from kind to kind.
    exists = False

    def __init__(self, code: str, message: str, status: int = 400, **fields):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields  # extra members of the modeled error shape


def validation(message: str) -> AWSError:
    return AWSError("ValidationException", message)


def not_found(message: str) -> AWSError:
    return AWSError("ResourceNotFound", message)


def already_exists(code: str, message: str) -> AWSError:
    """A Create refused because its resource exists already: ``code`` and ``message`` are the kind's own."""
    err = AWSError(code, message)
    err.exists = True
    return err


def in_use(message: str) -> AWSError:
    return AWSError("ResourceInUse", message)


def conflict(message: str) -> AWSError:
    return AWSError("ConflictException", message)


def not_implemented(service: str, operation: str) -> AWSError:
    # A 400 rather than 501: botocore retries 5xx, which would only delay the answer.
    return AWSError(
        "UnknownOperationException",
        f"SelfMaker does not implement {service} operation {operation} yet. "
        "See docs/coverage.md for the operations it serves.",
    )
