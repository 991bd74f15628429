"""`ser serve`: the app under uvicorn, with one log line when it is ready and one when it drains.

uvicorn itself runs at `warning` (its start-up chatter and access log are replaced by these
lines and the JSON request log), so these are the lines an operator reads.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

import uvicorn

from service import metrics, workers
from service.app import create_app
from service.settings import Settings
from service.websocket import websocket_protocol

log = logging.getLogger("ser")
DRAIN_S = 30   # SIGTERM: in-flight requests get this long to finish (stop containers with -t 35)
MAX_HEAD_BYTES = 16 * 1024   # request line + headers; h11's own limit, kept with httptools


def http_protocol():
    """uvicorn's httptools protocol (llhttp: faster than h11, and it refuses unknown methods),
    with a bound on the request head that httptools lacks; h11 where httptools is missing."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "h11"

    class BoundedHttpTools(HttpToolsProtocol):
        """Refuses (400, closed) a request whose head grows past MAX_HEAD_BYTES: httptools
        would buffer a header of any size, so one connection could hold any amount of memory."""

        head_bytes, reading_head = 0, True

        def data_received(self, data: bytes) -> None:
            if self.reading_head:
                self.head_bytes += len(data)
            super().data_received(data)
            if self.reading_head and self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.send_400_response("Request header too large.")

        def on_headers_complete(self) -> None:
            self.reading_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.head_bytes, self.reading_head = 0, True

    return BoundedHttpTools


class Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)   # lifespan (bundles loaded and warmed up), then the bind
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            models = ", ".join(f"{m.bundle.role} {m.bundle.name} {m.bundle.version} ({m.bundle.path})"
                               for m in self.config.app.state.runtime.models())
            parser = "h11" if "h11" in self.config.http_protocol_class.__module__ else "httptools"
            loop = type(asyncio.get_running_loop()).__module__.split(".")[0]   # uvloop or asyncio
            log.info("ready: serving %s on http://%s:%d (%s, %s)", models, host, port, parser, loop)

    async def shutdown(self, sockets=None) -> None:
        log.info("draining: no new connections; %d open connection(s) get up to %d s to finish",
                 len(self.server_state.connections), DRAIN_S)
        await super().shutdown(sockets)
        log.info("stopped")


def serve(settings: Settings, host: str, port: int) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # The lines are the message alone: no record needs the caller's frame, thread, process or
    # task, which logging would otherwise look up for every request's line (the logging HOWTO's
    # "Optimization" switches).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = logging.logAsyncioTasks = False
    processes = settings.workers or workers.usable_cpus()
    metrics_dir = metrics.count_across_processes() if processes > 1 else None
    try:
        app = create_app(settings)
        # Load and warm up the bundles here, before uvicorn: a bad bundle is then one clear error
        # line from `ser`, not a traceback from inside uvicorn's lifespan handling.
        app.state.runtime.load()
        # loop="auto": uvloop where installed. WebSocket frames are bounded before any work
        # (service/websocket.py); X-Forwarded-For is believed only from the proxies named.
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", http=http_protocol(), loop="auto",
                                access_log=False, timeout_graceful_shutdown=DRAIN_S,
                                ws=websocket_protocol(settings), ws_max_size=settings.stream_max_frame_bytes,
                                ws_per_message_deflate=False, proxy_headers=bool(settings.forwarded_allow_ips),
                                forwarded_allow_ips=settings.forwarded_allow_ips or None)
        if processes == 1:
            Server(config).run()
            return 0
        sockets = [config.bind_socket()]
        log.info("starting %d worker processes", processes)
        return workers.run_workers(processes, lambda: Server(config).run(sockets=sockets))
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
