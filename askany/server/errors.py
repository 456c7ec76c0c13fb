"""Errors as OpenAI-shaped JSON ({"error": {"message", "type", "code"}}) with the right status, never a
traceback: the clients AskAny serves (the openai SDK, LangChain, RAGFlow, Dify, OpenWebUI) read this shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from askany.core.errors import AskAnyError, ModelUnavailableError

log = logging.getLogger(__name__)

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
         405: "invalid_request_error", 413: "invalid_request_error", 503: "service_unavailable"}


class APIError(Exception):
    """A request AskAny answers with `status` and one sentence saying what to change."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": TYPES.get(status, "server_error"), "param": param,
                      "code": code}}


def error_response(status: int, message: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    problems, param = [], None
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        param = param or where or None
        problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "Invalid request body: " + "; ".join(problems), param


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api(_: Request, error: APIError) -> JSONResponse:
        return error_response(error.status, error.message, error.code, error.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(error)
        return error_response(400, message, "invalid_request", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        message = "No such endpoint; see GET /v1/models and the README" if error.status_code == 404 else str(
            error.detail)
        return error_response(error.status_code, message)

    @app.exception_handler(ModelUnavailableError)
    async def _model(_: Request, error: ModelUnavailableError) -> JSONResponse:
        return error_response(503, str(error), "model_unavailable")

    @app.exception_handler(AskAnyError)
    async def _askany(_: Request, error: AskAnyError) -> JSONResponse:
        return error_response(400, str(error), "invalid_request")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("Unexpected error while serving a request")
        return error_response(500, f"Internal error ({type(error).__name__}); the server log has the details")
