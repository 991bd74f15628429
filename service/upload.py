"""Getting the audio bytes out of a request: multipart `file`(s) or a raw audio/* body."""

from __future__ import annotations

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect

from service.errors import ApiError

RAW_TYPES = ("audio/", "application/octet-stream")
MAX_FIELD_BYTES = 1024 * 1024   # a text part (not a file) of a form: starlette's limit, kept
Part = tuple[str, str | None, bytes]   # (field name, filename or None for a text part, bytes)


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


def form_parts(body: bytes, content_type: str, max_files: int, max_fields: int) -> list[Part]:
    """The complete parts of a multipart/form-data body, in form order. The body is in memory
    already (bounded by SER_MAX_UPLOAD_BYTES and SER_MAX_INFLIGHT_BYTES) and decoding needs a
    file's bytes all at once, so parts are not spooled to temporary files as starlette's form
    parser does (a file and a copy per request). python-multipart parses; the limits and the
    refusals are starlette's, in the error table's words."""
    _, params = parse_options_header(content_type)
    if not params.get(b"boundary"):
        raise _unparsable("Missing boundary in multipart.")
    parts: list[Part] = []   # a part counts once it is complete: an unterminated last part is left out
    head: dict[bytes, bytes] = {}
    name, value, data, counts = bytearray(), bytearray(), [], {True: 0, False: 0}   # counts: files, fields
    current: list = [None, None]   # the part being read: field name, filename (None: a text part)

    def on_header_end() -> None:
        head[bytes(name).lower()] = bytes(value)
        name.clear()
        value.clear()

    def on_headers_finished() -> None:
        _, options = parse_options_header(head.pop(b"content-disposition", b""))
        head.clear()
        if b"name" not in options:
            raise _unparsable('The Content-Disposition header field "name" must be provided.')
        is_file = b"filename" in options
        counts[is_file] += 1
        if is_file and counts[True] > max_files:
            raise ApiError("invalid_request", f"more than {max_files} files in one request (SER_MAX_BATCH_FILES)")
        if not is_file and counts[False] > max_fields:
            raise _unparsable(f"Too many fields. Maximum number of fields is {max_fields}.")
        current[:] = _text(options[b"name"]), _text(options[b"filename"]) if is_file else None
        data.clear()

    def on_part_data(chunk: bytes, start: int, end: int) -> None:
        data.append(chunk[start:end])
        if current[1] is None and sum(map(len, data)) > MAX_FIELD_BYTES:
            raise _unparsable(f"Part exceeded maximum size of {MAX_FIELD_BYTES // 1024}KB.")

    def on_part_end() -> None:
        parts.append((current[0], current[1], data[0] if len(data) == 1 else b"".join(data)))

    parser = MultipartParser(params[b"boundary"], {
        "on_header_field": lambda b, s, e: name.extend(b[s:e]), "on_header_value": lambda b, s, e: value.extend(b[s:e]),
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as e:
        raise _unparsable("Invalid multipart data.") from e
    return parts


def _text(raw: bytes) -> str:
    """A name or filename: UTF-8, or latin-1 where it is not valid UTF-8 (as starlette reads them)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _unparsable(reason: str) -> ApiError:
    return ApiError("invalid_request", f"the multipart body cannot be parsed: {reason}")


async def _read(request: Request, fields: tuple[str, ...], max_files: int) -> list[tuple[str, bytes]]:
    ctype = request.headers.get("content-type", "").lower()
    names = " or ".join(f"'{f}'" for f in fields)
    accepted = f"multipart/form-data with the audio in a {names} field, or a raw body with an audio/* content type"
    if ctype.startswith("multipart/form-data"):
        parts = form_parts(await request.body(), request.headers["content-type"], max_files, max_files + 8)
        values = [(filename, data) for field, filename, data in parts if field in fields]   # form order
        uploads = [(filename, data) for filename, data in values if filename is not None]
        if not uploads:
            if values:   # a part without a filename: the form parser read it as text
                raise ApiError("missing_audio", f"the {names} part has no filename, so it was read as text; "
                                           f"send it as a file (curl -F {fields[0]}=@clip.wav)")
            raise ApiError("missing_audio", f"the form has no file in a {names} field; send {accepted}")
        return [(filename or f"{fields[0]}{i}", data) for i, (filename, data) in enumerate(uploads)]
    if ctype.startswith(RAW_TYPES):
        body = await request.body()
        if not body:
            raise ApiError("missing_audio", f"the request body is empty; send {accepted}")
        return [("body", body)]
    if not ctype or ctype.startswith("application/x-www-form-urlencoded"):   # a form with fields but no file
        raise ApiError("missing_audio", f"the request has no audio; send {accepted}")
    raise ApiError("unsupported_media_type", f"content type {ctype!r} is not accepted; send {accepted}")
