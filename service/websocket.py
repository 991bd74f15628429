"""Frame-level limits for `/stream`, applied by the WebSocket protocol before any work.

uvicorn's WebSocket protocol parses every frame of a read as it arrives, in the event loop: a
client sending millions of empty continuation frames (6 bytes each) kept the loop busy for
seconds and `/predict` waiting, and a permessage-deflate message was inflated whole before the
app could refuse it. This subclass of uvicorn's protocol (websockets' sans-I/O implementation):
- feeds each read to the parser SLICE bytes at a time and stops once the connection is failed,
  so no read costs more than a slice's parsing after the limit is crossed;
- charges every frame (data, fragment, ping or pong) to a budget of SER_STREAM_MAX_FRAMES_PER_S,
  refilled continuously, a second's worth at most, a frame counting less the more it carries
  (nothing from FULL_FRAME_BYTES on: a client sending audio as fast as the server takes it is
  never charged, an empty frame counts whole), and bounds a message to MAX_FRAGMENTS fragments:
  past either, `frame_flood` (1008);
- refuses permessage-deflate (audio hardly compresses) and bounds a message to
  SER_STREAM_MAX_FRAME_BYTES as its header arrives, fragments counted together, before any of it
  is read: past it, `frame_too_large` (1009).
Each ends the stream as the app does: an error frame with the table's code, then the close code.
"""

from __future__ import annotations

import json

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode

from service.errors import ERRORS
from service.settings import Settings

SLICE = 4096          # bytes parsed at a time: ~700 of the smallest frames
MAX_FRAGMENTS = 64    # a client that fragments at all sends a few
FULL_FRAME_BYTES = 640   # 20 ms of 16 kHz 16-bit audio: a frame this large is not charged


def error_frame(code: str, message: str) -> bytes:
    """The error event as an unmasked server text frame (no extension is ever negotiated)."""
    event = json.dumps({"type": "error", "code": code, "message": message}).encode()
    return Frame(Opcode.TEXT, event).serialize(mask=False)


def websocket_protocol(settings: Settings) -> type[WebSocketsSansIOProtocol]:
    rate = settings.stream_max_frames_per_s
    max_bytes = settings.stream_max_frame_bytes

    class BoundedWebSocket(WebSocketsSansIOProtocol):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.tokens, self.refilled = float(rate), self.loop.time()
            self.refused = False   # past a limit: nothing more of this client is parsed

        def data_received(self, data: bytes) -> None:
            view = memoryview(data)
            for i in range(0, len(data), SLICE):
                if self.refused or self.transport.is_closing():
                    return   # the rest of the read is dropped unparsed
                super().data_received(bytes(view[i:i + SLICE]))

        def handle_events(self) -> None:
            for event in self.conn.events_received():
                if self.refused or isinstance(event, Frame) and not self._within_limits(event):
                    return
                self._dispatch(event)

        def _dispatch(self, event) -> None:
            if not isinstance(event, Frame):
                return self.handle_connect(event)
            handlers = {Opcode.CONT: self.handle_cont, Opcode.TEXT: self.handle_text, Opcode.BINARY: self.handle_bytes,
                        Opcode.PONG: self.handle_pong, Opcode.CLOSE: self.handle_close}
            if event.opcode == Opcode.PING:
                return self.handle_ping()
            handlers[event.opcode](event)

        def _within_limits(self, frame: Frame) -> bool:
            now = self.loop.time()
            cost = max(0.0, 1.0 - len(frame.data) / FULL_FRAME_BYTES)
            self.tokens = min(float(rate), self.tokens + (now - self.refilled) * rate) - cost
            self.refilled = now
            if self.tokens < 0:
                self.refuse("frame_flood", f"more than {rate} small frames in a second (SER_STREAM_MAX_FRAMES_PER_S; "
                                           f"frames of {FULL_FRAME_BYTES} bytes or more are not counted)")
                return False
            if frame.opcode == Opcode.CONT and len(self.frames) >= MAX_FRAGMENTS:
                self.refuse("frame_flood", f"a message in more than {MAX_FRAGMENTS} fragments")
                return False
            return True

        def refuse(self, code: str, message: str) -> None:
            """Ends the stream: error frame, close frame, and the app told with the code as reason."""
            close = ERRORS[code].close
            self.conn.fail(close, code)
            self.transport.write(error_frame(code, message) + b"".join(self.conn.data_to_send()))
            self.queue.put_nowait({"type": "websocket.disconnect", "code": close, "reason": code})
            self.close_sent = self.refused = True
            self.transport.close()

        def handle_parser_exception(self) -> None:
            sent = self.conn.close_sent
            if sent is not None and sent.code == ERRORS["frame_too_large"].close:
                message = f"a message over {max_bytes} bytes (SER_STREAM_MAX_FRAME_BYTES)"
                self.transport.write(error_frame("frame_too_large", message))
                self.queue.put_nowait({"type": "websocket.disconnect", "code": sent.code, "reason": "frame_too_large"})
                self.transport.write(b"".join(self.conn.data_to_send()))
                self.close_sent = self.refused = True
                self.transport.close()
                return
            super().handle_parser_exception()

    return BoundedWebSocket
