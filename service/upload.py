"""Getting the audio bytes out of a request: multipart `file`(s) or a raw audio/* body."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile

from service.errors import ApiError

RAW_TYPES = ("audio/", "application/octet-stream")
ACCEPTED = "multipart/form-data with a 'file' field, or a raw body with an audio/* content type"


async def read_uploads(request: Request, field: str, max_files: int) -> list[tuple[str, bytes]]:
    """[(filename, bytes)] from the request; 400/415 JSON errors when there is no audio."""
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=max_files, max_fields=max_files + 8)
        uploads = [v for v in form.getlist(field) if isinstance(v, UploadFile)]
        if not uploads:
            raise ApiError(400, "missing_audio", f"no '{field}' file field in the form; send {ACCEPTED}")
        return [(u.filename or f"{field}{i}", await u.read()) for i, u in enumerate(uploads)]
    if ctype.startswith(RAW_TYPES):
        body = await request.body()
        if not body:
            raise ApiError(400, "missing_audio", f"the request body is empty; send {ACCEPTED}")
        return [("body", body)]
    if not ctype or ctype.startswith("application/x-www-form-urlencoded"):   # a form with fields but no file
        raise ApiError(400, "missing_audio", f"the request has no audio; send {ACCEPTED}")
    raise ApiError(415, "unsupported_media_type", f"content type {ctype!r} is not accepted; send {ACCEPTED}")
