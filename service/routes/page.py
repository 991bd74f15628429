"""The web page at / and its script and style sheet, with the headers that lock the page down.

The Content-Security-Policy lives here, in one place: a feature of the page that needs another
source (a WebSocket, an image host) adds it to CSP below. The page loads only its own files
(no inline script or style), talks only to its own origin (`connect-src 'self'` also covers a
same-origin WebSocket) and cannot be framed.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from service.errors import ApiError

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"page.js": "text/javascript", "page.css": "text/css",   # what /static/ serves, nothing else
          "live.js": "text/javascript", "live.css": "text/css", "pcm-worklet.js": "text/javascript"}

CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",        # the empty favicon
    "media-src": "'self' blob:",      # the clip's player plays the chosen or recorded file
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def page_headers() -> dict[str, str]:
    return {"Content-Security-Policy": "; ".join(f"{k} {v}" for k, v in CSP.items()),
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@router.get("/")
async def get_page():
    page = STATIC / "index.html"
    if not page.is_file():
        return JSONResponse({"docs": "/docs"})
    return FileResponse(page, media_type="text/html", headers=page_headers())


@router.get("/static/{name}")
async def get_asset(name: str):
    if name not in ASSETS:
        raise ApiError("not_found")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=page_headers())
