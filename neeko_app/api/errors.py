"""Errors in OpenAI's shape: `{"error": {"message", "type", "code"}}`, never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from neeko_app.serving.errors import error_response

log = logging.getLogger(__name__)

UNKNOWN_FIELD = "unrecognized field (the README's API section lists the fields this server takes)"


class ApiError(Exception):
    """An error answered to the client with `status` and a message it can act on."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _validation_message(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item.get("loc", ())[1:])
        message = (UNKNOWN_FIELD if item.get("type") == "extra_forbidden"
                   else str(item.get("msg")))
        problems.append(f"{where}: {message}" if where else message)
    return "invalid request: " + "; ".join(problems)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure, expected or not, in the OpenAI error shape."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_message(error), "invalid_request")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("request failed")
        return error_response(500, f"internal error ({type(error).__name__}); see the server log")
