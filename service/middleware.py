"""Pure-ASGI middleware: request id, JSON access log, request metrics, upload size limit."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from service.errors import ApiError, error_body
from service.metrics import Metrics

access_log = logging.getLogger("ser.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")   # a client's id is echoed only if it is tame


class RequestContext:
    def __init__(self, app, metrics: Metrics, max_upload_bytes: int):
        self.app, self.metrics, self.limit = app, metrics, max_upload_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = headers.get("x-request-id", "")
        rid = rid if REQUEST_ID.match(rid) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status, t0 = 500, time.perf_counter()

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.limit:
                # Refuse before reading a byte of the body.
                await self._reject_too_large(send_with_id, scope)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        finally:
            self.metrics.in_flight.dec()
            self._record(scope, status, time.perf_counter() - t0, rid)

    def _limited(self, receive):
        """Count body bytes as they arrive: a client that lies about or omits
        Content-Length still cannot make the service buffer more than the limit."""
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise ApiError(413, "upload_too_large", self._too_large_message())
            return message

        return limited_receive

    def _too_large_message(self) -> str:
        return f"the upload exceeds the limit of {self.limit} bytes (SER_MAX_UPLOAD_BYTES)"

    async def _reject_too_large(self, send, scope) -> None:
        scope["state"]["error_code"] = "upload_too_large"
        body = json.dumps(error_body("upload_too_large", self._too_large_message())).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    def _record(self, scope, status: int, seconds: float, rid: str) -> None:
        route = scope.get("route")
        path = getattr(route, "path", "unmatched")   # route templates only: bounded label cardinality
        self.metrics.request_latency.labels(route=path, method=scope["method"], status=str(status)).observe(seconds)
        code = scope["state"].get("error_code")
        if code:
            self.metrics.errors.labels(code=code).inc()
        access_log.info(json.dumps({
            "request_id": rid, "method": scope["method"], "path": scope["path"], "route": path,
            "status": status, "duration_ms": round(seconds * 1000, 3), "error": code,
            "client": (scope.get("client") or ["", 0])[0],
        }))
