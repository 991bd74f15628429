"""The Host allow-list (SER_ALLOWED_HOSTS), as Django's ALLOWED_HOSTS and Starlette's
TrustedHostMiddleware keep one.

A page on any site can point a name it controls at 127.0.0.1 (DNS rebinding): the browser
then sends that page's requests, and opens its WebSockets, to a service on localhost with the
attacker's name in Host and a matching Origin, so an Origin check alone lets them through. The
Host must be one of the names the service is reached by. The liveness, readiness and metrics
routes are exempt: probes and scrapers address a pod by its IP, and those routes hold no audio
and no answers.
"""

from __future__ import annotations

from service.errors import ApiError

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def host_name(host: str) -> str:
    """`Example.COM.:8000` -> `example.com`; `[::1]:8000` -> `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class HostAllowList:
    def __init__(self, allowed: list[str]):
        self.any = "*" in allowed
        self.names = frozenset(host_name(h) for h in allowed)

    def refusal(self, scope) -> ApiError | None:
        """An error for a request or stream whose Host is not allowed; None to go on. A request
        without Host (HTTP/1.0) comes from no browser, and passes."""
        if self.any or scope["path"] in EXEMPT_PATHS:
            return None
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if host is None or host_name(host) in self.names:
            return None
        return ApiError("forbidden_host", f"host {host[:100]!r} is not allowed here (SER_ALLOWED_HOSTS)")
