"""Domain errors and the one place that turns them into `{"error": {"code", "message"}}` responses."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """An error a client can act on: an HTTP status, a stable code and a human message."""

    status = 400
    default_code = "bad_request"

    def __init__(self, code: str | None = None, message: str = "", *, fields: dict[str, str] | None = None):
        self.code = code or self.default_code
        self.message = message or self.code.replace("_", " ")
        self.fields = fields
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}


class BadRequest(AppError):
    status = 400


class Unauthorized(AppError):
    status = 401
    default_code = "unauthorized"

    def __init__(self, code: str | None = None, message: str = "Sign in to continue.") -> None:
        super().__init__(code, message)


class Forbidden(AppError):
    status = 403
    default_code = "forbidden"


class NotFound(AppError):
    status = 404
    default_code = "not_found"


class Conflict(AppError):
    status = 409
    default_code = "conflict"


class Gone(AppError):
    status = 410
    default_code = "gone"


class PayloadTooLarge(AppError):
    status = 413
    default_code = "too_large"


class ServiceUnavailable(AppError):
    status = 503
    default_code = "unavailable"
