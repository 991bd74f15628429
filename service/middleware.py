"""Pure-ASGI middleware: Host allow-list, request id, JSON access log, request metrics, upload size and time limits."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time

from starlette.routing import Match

from service.errors import ERRORS, ApiError, error_body_for
from service.hosts import HostAllowList
from service.metrics import Metrics
from service.runtime import Limiter, UploadBudget

access_log = logging.getLogger("ser.access")
# The rest of an unread body cannot be skipped cheaply: close rather than keep the connection.
CLOSE = {"Connection": "close"}
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")   # a client's id is echoed only if it is tame
# Metric labels take only values from these fixed sets: a label that a client can choose makes
# one series per value, and a flood of made-up methods or paths would grow /metrics without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
NOT_FOUND = "not_found"   # the route label of every path that matches no route
MODEL_PATHS = ("/predict", "/v2/models/")   # where a POST runs a model: refused early under overload
READ_HEADERS = frozenset({b"x-request-id", b"content-length", b"transfer-encoding"})   # the request headers read here


class RequestContext:
    def __init__(self, app, metrics: Metrics, max_upload_bytes: int, upload_timeout_s: float = 30.0,
                 limiter: Limiter | None = None, routes: list | None = None, uploads: UploadBudget | None = None,
                 hosts: HostAllowList | None = None):
        self.app, self.metrics, self.limit, self.timeout_s = app, metrics, max_upload_bytes, upload_timeout_s
        self.limiter, self.uploads, self.hosts = limiter, uploads, hosts or HostAllowList(["*"])
        self.routes = routes or []   # to name the route of a request refused before routing
        self._latency = {}   # (route, method, status) -> its histogram series: labels() costs a lock and a lookup

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and (refusal := self.hosts.refusal(scope)):
            return await self._refuse_handshake(scope, send, refusal)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
                   if k.lower() in READ_HEADERS}
        rid = headers.get("x-request-id", "")
        # A random 128-bit id, as uuid4().hex, without a system call per request
        rid = rid if REQUEST_ID.match(rid) else f"{random.getrandbits(128):032x}"
        scope.setdefault("state", {})["request_id"] = rid
        status, t0 = 500, time.perf_counter()

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        self.metrics.in_flight.inc()
        declared = headers.get("content-length", "")
        need, reserved = self._body_bytes(declared, headers), 0
        try:
            # Every refusal comes before a byte of the body is read.
            if refusal := self.hosts.refusal(scope):
                await self._send_error(send_with_id, scope, refusal)
            elif declared.isdigit() and int(declared) > self.limit:
                await self._send_error(send_with_id, scope, ApiError("upload_too_large", self._too_large_message(),
                                                                     headers=CLOSE))
            elif self.uploads is not None and not self.uploads.reserve(need):
                await self._send_error(send_with_id, scope, self.uploads.refusal())
            else:
                reserved = need if self.uploads is not None else 0
                if self._must_refuse(scope):
                    await self._refuse_unparsed(scope, self._limited(receive), send_with_id)
                else:
                    await self.app(scope, self._limited(receive), send_with_id)
        finally:
            if reserved:
                self.uploads.release(reserved)
            self.metrics.in_flight.dec()
            self._record(scope, status, time.perf_counter() - t0, rid)

    def _body_bytes(self, declared: str, headers: dict[str, str]) -> int:
        """What the body may take: its announced length; the upload limit when it is sent
        chunked without one; nothing when there is no body."""
        if declared.isdigit():
            return int(declared)
        return self.limit if "transfer-encoding" in headers else 0

    def _limited(self, receive):
        """Count body bytes as they arrive: a client that lies about or omits
        Content-Length still cannot make the service buffer more than the limit. And the
        whole body must arrive within the upload timeout: a client that trickles bytes
        (slow loris) or promises more than it sends is cut off, not waited for."""
        seen, complete, deadline = 0, False, time.monotonic() + self.timeout_s

        async def limited_receive():
            nonlocal seen, complete
            if complete:   # after the body only a disconnect can come: no deadline on waiting for it
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise ApiError("upload_timeout", f"the upload did not complete within {self.timeout_s:g} s "
                                                 "(SER_UPLOAD_TIMEOUT_S)", headers=CLOSE) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.limit:
                    raise ApiError("upload_too_large", self._too_large_message(), headers=CLOSE)
            return message

        return limited_receive

    def _too_large_message(self) -> str:
        return f"the upload exceeds the limit of {self.limit} bytes (SER_MAX_UPLOAD_BYTES)"

    def _must_refuse(self, scope) -> bool:
        return (self.limiter is not None and self.limiter.full() and scope["method"] == "POST"
                and scope["path"].startswith(MODEL_PATHS))

    async def _refuse_unparsed(self, scope, receive, send) -> None:
        """503 while every slot and queue place is taken, decided before the upload is parsed:
        under overload a refusal must cost far less than an answer, or refusals eat the
        capacity. The body is read and dropped, so the connection stays usable."""
        refusal = self.limiter.refusal()
        try:
            while (await receive()).get("more_body", False):
                pass
        except ApiError as e:   # the body itself broke the size or time limit
            refusal = e
        await self._send_error(send, scope, refusal)

    async def _send_error(self, send, scope, e: ApiError) -> None:
        scope["state"]["error_code"] = e.code
        body = json.dumps(error_body_for(scope["path"], e.code, e.message)).encode()
        await send({"type": "http.response.start", "status": e.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *((k.lower().encode(), v.encode()) for k, v in e.headers.items())]})
        await send({"type": "http.response.body", "body": body})

    async def _refuse_handshake(self, scope, send, e: ApiError) -> None:
        """A WebSocket handshake refused with the HTTP error answer, where the server can send one
        (uvicorn can), before the app sees it; a bare 403 elsewhere."""
        self.metrics.errors.labels(code=e.code).inc()
        if "websocket.http.response" not in scope.get("extensions", {}):
            return await send({"type": "websocket.close", "code": ERRORS[e.code].close})
        scope.setdefault("state", {})
        await self._send_error(lambda m: send({**m, "type": "websocket." + m["type"]}), scope, e)

    def _route(self, scope) -> str:
        """The route template of the request, or NOT_FOUND: never the path the client sent."""
        route = scope.get("route") or next((r for r in self.routes if r.matches(scope)[0] != Match.NONE), None)
        return getattr(route, "path", NOT_FOUND)

    def _record(self, scope, status: int, seconds: float, rid: str) -> None:
        route, method = self._route(scope), scope["method"]
        method_label = method if method in METHODS else "other"
        key = (route, method_label, status)   # bounded: routes and methods are fixed sets, statuses a few dozen
        if (series := self._latency.get(key)) is None:
            series = self._latency[key] = self.metrics.request_latency.labels(
                route=route, method=method_label, status=str(status))
        series.observe(seconds)
        code = scope["state"].get("error_code")
        if code:
            self.metrics.errors.labels(code=code if code in ERRORS else "other").inc()
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(json.dumps({
                "request_id": rid, "method": method[:32], "path": scope["path"][:512], "route": route,
                "status": status, "duration_ms": round(seconds * 1000, 3), "error": code,
                "client": (scope.get("client") or ["", 0])[0],
            }))
