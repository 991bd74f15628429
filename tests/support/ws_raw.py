"""WebSocket over a raw socket: frames no well-behaved client library would send (floods of empty
continuation frames, compressed frames nobody negotiated), and the server's frames read back."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct

CONT, TEXT, BINARY, CLOSE = 0x0, 0x1, 0x2, 0x8


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A client frame (masked, as RFC 6455 requires; the mask is zero, which leaves the payload as is)."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + b"\0\0\0\0" + payload


def handshake(port: int, path: str = "/stream", *, host: str | None = None, **headers: str) -> tuple[socket.socket, bytes]:
    """Open a WebSocket on 127.0.0.1:`port`; returns the socket and the server's response head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def read_until_close(sock: socket.socket, timeout_s: float = 30) -> tuple[list[dict], int | None]:
    """The server's text frames (as JSON) until its close frame; (events, close code), the code
    None when the connection ended without one."""
    sock.settimeout(timeout_s)
    buf, events = b"", []
    while True:
        while len(buf) < 2 or len(buf) < _frame_length(buf):
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError, socket.timeout):
                chunk = b""
            if not chunk:
                return events, None
            buf += chunk
        n = _frame_length(buf)
        opcode, payload = buf[0] & 0x0F, buf[_header_length(buf):n]
        buf = buf[n:]
        if opcode == TEXT:
            events.append(json.loads(payload))
        elif opcode == CLOSE:
            return events, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def _header_length(buf: bytes) -> int:
    n = buf[1] & 0x7F
    return 2 + (2 if n == 126 else 8 if n == 127 else 0)


def _frame_length(buf: bytes) -> int:
    """Total bytes of the server frame (unmasked) at the start of `buf`, or a bound to read up to."""
    n, head = buf[1] & 0x7F, _header_length(buf)
    if len(buf) < head:
        return head
    if n == 126:
        n = struct.unpack("!H", buf[2:4])[0]
    elif n == 127:
        n = struct.unpack("!Q", buf[2:10])[0]
    return head + n
