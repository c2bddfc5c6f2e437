"""The error body both servers answer with, in OpenAI's shape:
`{"error": {"message", "type", "code"}}`."""

from __future__ import annotations

from fastapi.responses import JSONResponse


def error_response(status: int, message: str, code: str | None = None) -> JSONResponse:
    """A JSON error response with `status` and a message the client can act on."""
    kind = ("authentication_error" if status == 401
            else "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}},
                        status_code=status)
