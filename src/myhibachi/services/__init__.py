"""Business logic, independent of HTTP."""

from myhibachi.services.bookings import BookingService
from myhibachi.services.errors import Conflict, InvalidInput, NotFound, ServiceError

__all__ = ["BookingService", "Conflict", "InvalidInput", "NotFound", "ServiceError"]
