"""Domain errors; the API maps them to 404, 409 and 422."""

from __future__ import annotations


class ServiceError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    """An id that does not exist (404)."""


class Conflict(ServiceError):
    """A request that the current state forbids: an illegal transition, a full slot (409)."""


class InvalidInput(ServiceError):
    """A value that is well-formed but not acceptable, e.g. a date in the past (422)."""

    def __init__(self, field: str, message: str, *, location: str = "body") -> None:
        super().__init__(message)
        self.field = field
        self.location = location
