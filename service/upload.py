"""Getting the audio bytes out of a request: multipart `file`(s) or a raw audio/* body."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from service.errors import ApiError

RAW_TYPES = ("audio/", "application/octet-stream")


async def read_uploads(request: Request, fields: tuple[str, ...], max_files: int) -> list[tuple[str, bytes]]:
    """[(filename, bytes)] of the files in any of the multipart `fields` (or the raw audio body);
    400/415 JSON errors when there is no audio."""
    try:
        return await _read(request, fields, max_files)
    except ClientDisconnect:
        # Nobody is left to answer; 499 (as nginx logs it) keeps this out of the 5xx counts.
        raise ApiError("client_disconnected") from None


async def read_body(request: Request) -> bytes:
    """The whole raw body, whatever its content type."""
    try:
        return await request.body()
    except ClientDisconnect:
        raise ApiError("client_disconnected") from None


async def _form(request: Request, max_files: int):
    """The parsed multipart form; the parser's refusals in the table's words."""
    try:
        return await request.form(max_files=max_files, max_fields=max_files + 8)
    except HTTPException as e:   # starlette's MultiPartException, raised as a 400
        if "Too many files" in str(e.detail):
            raise ApiError("invalid_request", f"more than {max_files} files in one request (SER_MAX_BATCH_FILES)") from e
        raise ApiError("invalid_request", f"the multipart body cannot be parsed: {e.detail}") from e


async def _read(request: Request, fields: tuple[str, ...], max_files: int) -> list[tuple[str, bytes]]:
    ctype = request.headers.get("content-type", "").lower()
    names = " or ".join(f"'{f}'" for f in fields)
    accepted = f"multipart/form-data with the audio in a {names} field, or a raw body with an audio/* content type"
    if ctype.startswith("multipart/form-data"):
        form = await _form(request, max_files)
        values = [v for k, v in form.multi_items() if k in fields]   # form order
        uploads = [v for v in values if isinstance(v, UploadFile)]
        if not uploads:
            if values:   # a part without a filename: the form parser read it as text
                raise ApiError("missing_audio", f"the {names} part has no filename, so it was read as text; "
                                           f"send it as a file (curl -F {fields[0]}=@clip.wav)")
            raise ApiError("missing_audio", f"the form has no file in a {names} field; send {accepted}")
        return [(u.filename or f"{fields[0]}{i}", await u.read()) for i, u in enumerate(uploads)]
    if ctype.startswith(RAW_TYPES):
        body = await request.body()
        if not body:
            raise ApiError("missing_audio", f"the request body is empty; send {accepted}")
        return [("body", body)]
    if not ctype or ctype.startswith("application/x-www-form-urlencoded"):   # a form with fields but no file
        raise ApiError("missing_audio", f"the request has no audio; send {accepted}")
    raise ApiError("unsupported_media_type", f"content type {ctype!r} is not accepted; send {accepted}")
