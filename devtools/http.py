"""Raw HTTP over a socket: requests are sent byte for byte as built, so malformed framing (a
Content-Length that lies, a missing boundary, a 1 MB header) reaches the server unchanged."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    body: bytes
    headers: dict[str, str]
    path: str = "/predict"
    method: str = "POST"
    auto_length: bool = True   # add a true Content-Length unless the case sets its own framing


BOUNDARY = "ser-corpus-boundary"


def part(name: str, data: bytes, filename: str | bytes | None = "clip.wav", ctype: str = "audio/wav",
         extra: bytes = b"") -> bytes:
    disp = f'form-data; name="{name}"'.encode()
    if filename is not None:
        disp += b'; filename="' + (filename.encode() if isinstance(filename, str) else filename) + b'"'
    head = b"Content-Disposition: " + disp + b"\r\n" + (f"Content-Type: {ctype}\r\n".encode() if ctype else b"") + extra
    return b"--" + BOUNDARY.encode() + b"\r\n" + head + b"\r\n" + data + b"\r\n"


def form(*parts: bytes, path: str = "/predict", close: bool = True, ctype: str | None = None) -> Request:
    body = b"".join(parts) + (b"--" + BOUNDARY.encode() + b"--\r\n" if close else b"")
    return Request(body, {"Content-Type": ctype or f"multipart/form-data; boundary={BOUNDARY}"}, path)


def raw(data: bytes, ctype: str | None = "audio/wav", path: str = "/predict", **headers: str) -> Request:
    h = {"Content-Type": ctype} if ctype is not None else {}
    return Request(data, {**h, **headers}, path)


def chunked(data: bytes, ctype: str = "audio/wav", size: int = 65_536) -> Request:
    body = b"".join(f"{len(data[i:i + size]):x}\r\n".encode() + data[i:i + size] + b"\r\n"
                    for i in range(0, len(data), size)) + b"0\r\n\r\n"
    return Request(body, {"Content-Type": ctype, "Transfer-Encoding": "chunked"}, auto_length=False)



def request_bytes(r: Request, host: str, port: int, keep_alive: bool = False) -> bytes:
    """The request as it goes on the wire."""
    head = [f"{r.method} {r.path} HTTP/1.1", f"Host: {host}:{port}"] + ([] if keep_alive else ["Connection: close"])
    head += [f"{k}: {v}" for k, v in r.headers.items()]
    if r.auto_length and (r.body or r.method == "POST"):
        head.append(f"Content-Length: {len(r.body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + r.body


def send(host: str, port: int, r: Request, timeout_s: float = 60) -> tuple[int, dict, bytes]:
    """One request on a fresh connection; returns (status, headers, body). Status 0: no answer."""
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        try:
            s.sendall(request_bytes(r, host, port))
        except (BrokenPipeError, ConnectionResetError):
            pass   # the server may answer and close before taking the whole body
        chunks = []
        try:
            while block := s.recv(65_536):
                chunks.append(block)
        except ConnectionResetError:
            pass
    data = b"".join(chunks)
    if not data:
        return 0, {}, b""
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return int(lines[0].split()[1]), headers, body


def dechunk(body: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = body.index(b"\r\n", pos)
        n = int(body[pos:end].split(b";")[0], 16)
        if n == 0:
            return b"".join(out)
        out.append(body[end + 2:end + 2 + n])
        pos = end + 2 + n + 2
