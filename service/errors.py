"""API errors: every failure answers `{"error": {"code", "message"}}` with a stable code; under
/v2 (the Open Inference Protocol) the protocol's form, `{"error": "<code>: <message>"}`.

`ERRORS` is the one table of codes. Every error takes its HTTP status from it (`ApiError(code,
message)`, and an `AudioError` through the same handler), and so does every WebSocket close
code of `/stream` (`StreamError`, service/streaming.py); a fixed message is written once, as
the table's example, and the OpenAPI document declares for each route the codes of the kinds of failure that the
route can meet (`error_responses`), so a code added to the table is documented wherever it
applies.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.audio import FORMATS, AudioError

# The kinds of route an error code can come from; a route declares the kinds it is.
ROUTE_KINDS = {
    "request": "reads an upload and query parameters",
    "clip": "answers for one clip (the batch route reports these per file, inside a 200)",
    "auth": "is behind SER_API_KEY",
    "model": "runs a model",
    "ready": "reports readiness",
    "body": "reads a request body",
    "tensor": "takes an Open Inference Protocol inference request",
    "oip_model": "names an Open Inference Protocol model in its path",
    "any": "any path; not declared per route",
    "stream": "ends a WebSocket /stream only (a close code, no HTTP status)",
}

# WebSocket close codes (RFC 6455) that are not errors of the table.
CLOSE_NORMAL = 1000      # the stream ended as it should: summary sent
CLOSE_GOING_AWAY = 1001
CLOSE_NO_STATUS = 1005   # the client closed without a code
CLOSE_ABNORMAL = 1006    # the connection dropped without a close frame


@dataclass(frozen=True)
class ErrorSpec:
    status: int | None   # None: a stream-only code
    kinds: tuple[str, ...]
    summary: str
    example: str   # a message the service really gives, with the default settings (tests/service/test_openapi.py);
                   # the message itself where it never varies
    headers: tuple[tuple[str, str], ...] = ()   # (name, description) of headers sent with it
    close: int | None = None   # the WebSocket close code, where /stream can end with this code
    settings: tuple[str, ...] = ()   # the settings that govern it, named in its messages


ERRORS: dict[str, ErrorSpec] = {
    "invalid_inference_request": ErrorSpec(
        400, ("tensor",), "An inference request's JSON, tensors or binary framing do not follow the protocol "
                          "or the model's metadata (GET /v2/models/{model_name})",
        "input 'waveform': its shape [1, 16000] holds 16000 values but 'data' has 3"),
    "invalid_request": ErrorSpec(400, ("request",), "The multipart body cannot be parsed, or holds too many files",
                                 "more than 16 files in one request (SER_MAX_BATCH_FILES)",
                                 settings=("SER_MAX_BATCH_FILES",)),
    "forbidden_host": ErrorSpec(400, ("any",), "The Host header is not one this service answers to (SER_ALLOWED_HOSTS); "
                                               "refused before any work, as DNS rebinding would send it",
                                "host 'rebind.example' is not allowed here (SER_ALLOWED_HOSTS)", close=1008,
                                settings=("SER_ALLOWED_HOSTS",)),
    "missing_audio": ErrorSpec(400, ("request",), "The request holds no audio",
                               "the form has no file in a 'file' field; send multipart/form-data with the audio "
                               "in a 'file' field, or a raw body with an audio/* content type"),
    "empty_audio": ErrorSpec(400, ("clip",), "The file is empty or decodes to no samples",
                             f"the uploaded file is empty; accepted formats: {FORMATS}"),
    "truncated_audio": ErrorSpec(400, ("clip",), "The file is cut short",
                                 "the WAV file is truncated: its header announces 32000 bytes of audio "
                                 "but only 156 are present"),
    "audio_too_short": ErrorSpec(400, ("clip",), "The clip is too short to classify",
                                 "the clip lasts 0.050 s; at least 0.1 s is needed"),
    "invalid_audio": ErrorSpec(400, ("clip",), "The audio holds NaN or infinite samples",
                               "the audio contains NaN or infinite sample values", close=1007),
    "unauthorized": ErrorSpec(401, ("auth",), "SER_API_KEY is set and X-API-Key is missing or wrong",
                              "missing or wrong API key; send it in the X-API-Key header", close=1008,
                              settings=("SER_API_KEY",)),
    "not_found": ErrorSpec(404, ("any",), "No such path", "Not Found"),
    "model_not_found": ErrorSpec(404, ("oip_model",), "The path names no model of the Open Inference Protocol API",
                                 "no model named 'foo123'; the models are student, teacher and auto"),
    "method_not_allowed": ErrorSpec(405, ("any",), "The path exists, the method does not (see `Allow`)",
                                    "Method Not Allowed"),
    "upload_timeout": ErrorSpec(408, ("request", "body"), "The body did not arrive within SER_UPLOAD_TIMEOUT_S",
                                "the upload did not complete within 30 s (SER_UPLOAD_TIMEOUT_S)",
                                settings=("SER_UPLOAD_TIMEOUT_S",)),
    "upload_too_large": ErrorSpec(413, ("request", "body"), "The body exceeds SER_MAX_UPLOAD_BYTES",
                                  "the upload exceeds the limit of 10000000 bytes (SER_MAX_UPLOAD_BYTES)",
                                  settings=("SER_MAX_UPLOAD_BYTES",)),
    "audio_too_long": ErrorSpec(413, ("clip",), "The clip exceeds SER_MAX_DURATION_S",
                                "the clip lasts 75.0 s; at most 60 s is accepted (SER_MAX_DURATION_S)",
                                settings=("SER_MAX_DURATION_S",)),
    "unsupported_media_type": ErrorSpec(415, ("request", "body"), "The body is neither multipart nor audio, "
                                                                   "or is compressed (Content-Encoding)",
                                        "content type 'text/plain' is not accepted; send multipart/form-data "
                                        "with the audio in a 'file' field, or a raw body with an audio/* content type"),
    "unsupported_audio": ErrorSpec(415, ("clip",), "The file is not audio that the decoder reads",
                                   "could not decode the audio (Format not recognised.); "
                                   f"accepted formats: {FORMATS}"),
    "invalid_parameter": ErrorSpec(422, ("request",), "A query parameter is out of range",
                                   "query.top_k: Input should be less than or equal to 64", close=4400),
    "client_disconnected": ErrorSpec(499, ("any",), "The client left during the upload; only logged and counted",
                                     "the client closed the connection during the upload"),
    "internal_error": ErrorSpec(500, ("any",), "A bug; the server log has the details",
                                "unexpected RuntimeError; see the server log", close=1011),
    "overloaded": ErrorSpec(503, ("model",), "Too many requests waiting, or the uploads in progress fill the "
                                             "upload budget; retry after `Retry-After` seconds",
                            "the service is at capacity (its queue, or its upload budget SER_MAX_INFLIGHT_BYTES, "
                            "is full); retry shortly",
                            headers=(("Retry-After", "Seconds to wait before retrying; sent with `overloaded`"),),
                            close=1013, settings=("SER_MAX_QUEUE", "SER_MAX_INFLIGHT_BYTES", "SER_MAX_STREAMS")),
    "teacher_unavailable": ErrorSpec(503, ("model", "oip_model"), "The teacher was asked for and is not loaded",
                                     "no teacher model is loaded; set SER_TEACHER_BUNDLE or use model=student",
                                     close=4503, settings=("SER_TEACHER_BUNDLE",)),
    "not_ready": ErrorSpec(503, ("model", "ready", "oip_model"), "The models are still loading",
                           "the models are still loading", close=1013),
    # /stream only: the error frame's code and the close code (docs/api.md, "Live streams").
    "invalid_message": ErrorSpec(None, ("stream",), "A text frame that is not a known control message, or a partial sample",
                                 'a text frame must be JSON: {"type": "end"}', close=1003),
    "forbidden_origin": ErrorSpec(None, ("stream",), "A page of another origin opened the stream",
                                  "pages from http://evil.example may not open streams here (SER_CORS_ORIGINS)",
                                  close=1008, settings=("SER_CORS_ORIGINS",)),
    "frame_flood": ErrorSpec(None, ("stream",), "Frames at a rate no audio client sends, or a message in too many "
                                                "fragments",
                             "more than 1000 small frames in a second (SER_STREAM_MAX_FRAMES_PER_S; frames of 640 "
                             "bytes or more are not counted)",
                             close=1008, settings=("SER_STREAM_MAX_FRAMES_PER_S",)),
    "frame_too_large": ErrorSpec(None, ("stream",), "A frame over SER_STREAM_MAX_FRAME_BYTES, refused before it is "
                                                    "inflated or assembled",
                                 "a message over 262144 bytes (SER_STREAM_MAX_FRAME_BYTES)",
                                 close=1009, settings=("SER_STREAM_MAX_FRAME_BYTES",)),
    "slow_consumer": ErrorSpec(None, ("stream",), "The client stopped reading its events",
                               "the client has not read its events for 10 s (SER_STREAM_IDLE_S); "
                               "64 are waiting (SER_STREAM_SEND_QUEUE)", close=1013, settings=("SER_STREAM_IDLE_S", "SER_STREAM_SEND_QUEUE")),
    "streams_per_client": ErrorSpec(None, ("stream",), "This client address has SER_STREAM_MAX_PER_CLIENT streams "
                                                       "open", "127.0.0.1 has 4 streams open, the most one client "
                                                               "may (SER_STREAM_MAX_PER_CLIENT)",
                                    close=1013, settings=("SER_STREAM_MAX_PER_CLIENT",)),
    "stream_idle": ErrorSpec(None, ("stream",), "No frame for SER_STREAM_IDLE_S",
                             "no frame for 10 s (SER_STREAM_IDLE_S)", close=4408, settings=("SER_STREAM_IDLE_S",)),
    "stream_too_slow": ErrorSpec(None, ("stream",), "Audio arrives far below real time: a stream must hold its slot "
                                                    "with audio",
                                 "0.02 s of audio in the last 6.6 s; at least 0.5x real time is needed "
                                 "(SER_STREAM_MIN_SPEED over SER_STREAM_RATE_WINDOW_S)",
                                 close=4408, settings=("SER_STREAM_MIN_SPEED", "SER_STREAM_RATE_WINDOW_S")),
}

# Error code -> WebSocket close code, for the codes a stream can end with.
CLOSE_CODES = {code: spec.close for code, spec in ERRORS.items() if spec.close is not None}


class ErrorBody(BaseModel):
    # A str, not a Literal: a code missing from the table must fail the contract tests, not the request.
    code: str = Field(description="Stable: branch on this, not on the message", json_schema_extra={"enum": list(ERRORS)})
    message: str = Field(description="For people: names the bad value and what was expected")


class ErrorResponse(BaseModel):
    error: ErrorBody


class ProtocolErrorResponse(BaseModel):
    error: str = Field(description="`<code>: <message>`, the code being one of the REST API's stable codes",
                       examples=["teacher_unavailable: no teacher model is loaded; set SER_TEACHER_BUNDLE "
                                 "or use model=student"])


def error_responses(*kinds: str, protocol: bool = False) -> dict[int, dict]:
    """OpenAPI `responses` for a route of these kinds: per status, the error schema and one
    real example per code; in the Open Inference Protocol's form with `protocol`."""
    unknown = set(kinds) - set(ROUTE_KINDS)
    if unknown:
        raise ValueError(f"unknown route kinds {sorted(unknown)}; expected some of {sorted(ROUTE_KINDS)}")
    by_status: dict[int, dict[str, ErrorSpec]] = defaultdict(dict)
    for code, spec in ERRORS.items():
        if spec.status is not None and set(spec.kinds) & set(kinds):
            by_status[spec.status][code] = spec
    responses = {}
    for status, specs in sorted(by_status.items()):
        body = protocol_error_body if protocol else error_body
        examples = {c: {"summary": s.summary, "value": body(c, s.example)} for c, s in specs.items()}
        responses[status] = {"model": ProtocolErrorResponse if protocol else ErrorResponse, "description": "; ".join(f"`{c}`: {s.summary}" for c, s in specs.items()),
                             "content": {"application/json": {"examples": examples}}}
        headers = {name: {"description": d, "schema": {"type": "integer"}} for s in specs.values() for name, d in s.headers}
        if headers:
            responses[status]["headers"] = headers
    return responses


class ApiError(Exception):
    """An error answer: `code` from ERRORS, which gives the status; without `message`, the
    table's own wording (for the codes whose message never varies)."""

    def __init__(self, code: str, message: str | None = None, headers: dict[str, str] | None = None):
        spec = ERRORS[code]
        message = spec.example if message is None else message
        super().__init__(message)
        self.status, self.code, self.message, self.headers = spec.status, code, message, headers or {}


def validation_problems(errors: list[dict], where: tuple[str, ...] = ()) -> str:
    """Pydantic's errors as one message: `query.top_k: Input should be ...; ...`."""
    return "; ".join(f"{'.'.join(map(str, (*where, *err['loc'])))}: {err['msg']}" for err in errors)


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def protocol_error_body(code: str, message: str) -> dict:
    """The Open Inference Protocol's error: one string, which its clients print as it is."""
    return {"error": f"{code}: {message}"}


def is_protocol_path(path: str) -> bool:
    """Whether `path` belongs to the Open Inference Protocol (KServe V2) API, /v2."""
    return path == "/v2" or path.startswith("/v2/")


def error_body_for(path: str, code: str, message: str) -> dict:
    """The error body in the form of the API that `path` belongs to."""
    return (protocol_error_body if is_protocol_path(path) else error_body)(code, message)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   path: str = "") -> JSONResponse:
    return JSONResponse(error_body_for(path, code, message), status_code=status, headers=headers)


# The framework's own HTTP errors, by status.
HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception the app can meet onto the JSON error shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, e: ApiError) -> JSONResponse:
        request.state.error_code = e.code
        return error_response(e.status, e.code, e.message, e.headers, path=request.url.path)

    @app.exception_handler(AudioError)
    async def _audio(request: Request, e: AudioError) -> JSONResponse:
        return await _api(request, ApiError(e.code, e.message))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return await _api(request, ApiError("invalid_parameter", validation_problems(e.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(e.status_code)
        if code is None:   # a status the framework raises that the table does not name
            request.state.error_code = "http_error"
            return error_response(e.status_code, "http_error", str(e.detail), e.headers, path=request.url.path)
        # e.headers carries `Allow` on a 405, which RFC 9110 requires.
        return await _api(request, ApiError(code, str(e.detail), headers=e.headers))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        # Reached only by a bug; still answer in the documented shape.
        return await _api(request, ApiError("internal_error", f"unexpected {type(e).__name__}; see the server log"))
