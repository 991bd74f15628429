"""`ser serve`: the app under uvicorn, with one log line when it is ready and one when it drains.

uvicorn itself runs at `warning` (its start-up chatter and access log are replaced by these
lines and the JSON request log), so these are the lines an operator reads.
"""

from __future__ import annotations

import logging

import uvicorn

from service.app import create_app
from service.settings import Settings

log = logging.getLogger("ser")
DRAIN_S = 30   # SIGTERM: in-flight requests get this long to finish (stop containers with -t 35)


class Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)   # lifespan (bundles loaded and warmed up), then the bind
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            models = ", ".join(f"{m.bundle.role} {m.bundle.name} {m.bundle.version} ({m.bundle.path})"
                               for m in self.config.app.state.runtime.models())
            log.info("ready: serving %s on http://%s:%d", models, host, port)

    async def shutdown(self, sockets=None) -> None:
        log.info("draining: no new connections; %d open connection(s) get up to %d s to finish",
                 len(self.server_state.connections), DRAIN_S)
        await super().shutdown(sockets)
        log.info("stopped")


def serve(settings: Settings, host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = create_app(settings)
    # Load and warm up the bundles here, before uvicorn: a bad bundle is then one clear error
    # line from `ser`, not a traceback from inside uvicorn's lifespan handling.
    app.state.runtime.load()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=DRAIN_S)
    Server(config).run()
