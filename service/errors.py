"""API errors: every failure answers `{"error": {"code", "message"}}` with a stable code."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.audio import AudioError

# HTTP status of each audio error code raised by the front end.
AUDIO_STATUS = {
    "empty_audio": 400,
    "truncated_audio": 400,
    "audio_too_short": 400,
    "audio_too_long": 413,
    "invalid_audio": 400,
    "unsupported_audio": 415,
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def from_audio_error(e: AudioError) -> ApiError:
    return ApiError(AUDIO_STATUS.get(e.code, 400), e.code, e.message)


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception the app can meet onto the JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, e: ApiError) -> JSONResponse:
        request.state.error_code = e.code
        return error_response(e.status, e.code, e.message, e.headers)

    @app.exception_handler(AudioError)
    async def _audio(request: Request, e: AudioError) -> JSONResponse:
        return await _api(request, from_audio_error(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return await _api(request, ApiError(422, "invalid_parameter", problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
        return await _api(request, ApiError(e.status_code, codes.get(e.status_code, "http_error"), str(e.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        # Reached only by a bug; still answer in the documented shape.
        return await _api(request, ApiError(500, "internal_error", f"unexpected {type(e).__name__}; see the server log"))
