"""GET /: the web page, and its assets under /web; neither needs an API key (the page asks
for one when the server requires keys, and sends it with each API call)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
"""The page's HTML, CSS and JavaScript, shipped in the repository: no build step, no CDN."""
ASSETS_URL = "/web"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        # Uploaded files play from blob: URLs; a submitted URL plays from where it is.
        "media-src 'self' blob: http: https:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
"""Only the page's own scripts and styles run, and it talks only to this server."""

router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> FileResponse:
    """The page: submit files or a URL, follow the jobs, read and play the transcripts."""
    return FileResponse(
        WEB_DIR / "index.html",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


def assets() -> StaticFiles:
    """The page's scripts, styles and icon, mounted at ASSETS_URL."""
    return StaticFiles(directory=WEB_DIR)
