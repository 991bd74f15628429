"""WebSocket /stream: live PCM in, one emotion event per hop out (docs/api.md, "Live streams").

The route admits (service/stream_admission.py), accepts and hands over to a Session
(service/stream_session.py); a refusal or an error ends the stream with an error frame and
the close code of its code in the error table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from service.errors import CLOSE_NORMAL
from service.stream_admission import Streams, subprotocol
from service.stream_session import ClientLeft, Session
from service.streaming import StreamError

router = APIRouter()
log = logging.getLogger("ser.access")   # one line per stream, like the request log
CLOSE_TIMEOUT_S = 5.0             # for the error frame and close handshake to a client that may not read


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    streams: Streams = websocket.app.state.streams
    started, sid = time.perf_counter(), uuid.uuid4().hex
    session, close_code, error = None, CLOSE_NORMAL, None
    try:
        admission = streams.admit(websocket)
        await websocket.accept(subprotocol=subprotocol(websocket))
        with streams.holding(admission):
            session = Session(websocket, streams, admission)
            close_code = await session.run()
    except ClientLeft as e:
        close_code, error = e.code, e.error
    except StreamError as e:
        close_code, error = e.close_code, e.code
        await _fail(websocket, e)
    streams.closed(close_code, error)
    log.info(json.dumps({
        "stream_id": sid, "path": "/stream", "close_code": close_code, "error": error,
        "seconds": round(time.perf_counter() - started, 3), "windows": session.windows if session else 0,
        "stream_s": round(session.windower.duration_s, 3) if session else 0.0,
        "client": (websocket.client.host if websocket.client else ""),
    }))


async def _fail(websocket: WebSocket, e: StreamError) -> None:
    """The error frame, then the close code; given up on after CLOSE_TIMEOUT_S."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            if websocket.client_state.name == "CONNECTING":
                await websocket.accept(subprotocol=subprotocol(websocket))
            await websocket.send_text(json.dumps({"type": "error", "code": e.code, "message": e.message}))
            await websocket.close(e.close_code, reason=e.code)
    except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
        pass   # the client has gone or does not read: nothing more to tell it
