"""The operator dashboard at /dashboard/: its pages (proxy/dashboard/) and the
chart library (uPlot, vendored in proxy/static/vendor/uplot/, see SOURCE.md).

The files hold no data, so they are served without a key; every figure on the
pages comes from the gateway's JSON APIs, which the page calls with the master
key the operator typed, kept in the tab's sessionStorage and sent as
`Authorization: Bearer` (never in a URL, never in a cookie). The pages run under
a strict Content-Security-Policy: scripts, styles and connections from this
origin only, no inline script or style, no eval, no forms posted anywhere, no
framing. Ordinary Flask views: the chat endpoint in front of Flask never sees
these paths."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, current_app, jsonify, send_from_directory

from proxy.errors import NotFound

bp = Blueprint("dashboard", __name__)

PAGES = Path(__file__).resolve().parent.parent / "dashboard"
VENDOR = Path(__file__).resolve().parent.parent / "static" / "vendor"
SERVED = (".html", ".js", ".css", ".svg")  # what the pages load; nothing else is served
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated (ETag), so a new version shows at once
}


@bp.get("/dashboard")
@bp.get("/dashboard/")
def index():
    return _file(PAGES, "index.html")


@bp.get("/dashboard/auth.json")
def auth():
    """Whether the pages must ask for the master key: what any request without a key
    would learn anyway (401 or not), said without a failed request in the console."""
    response = jsonify({"master_key_required": current_app.extensions["switchboard"].keys.enabled})
    response.headers.update(HEADERS)
    return response


@bp.get("/dashboard/vendor/<path:filename>")
def vendor(filename: str):
    return _file(VENDOR, filename)


@bp.get("/dashboard/<path:filename>")
def asset(filename: str):
    return _file(PAGES, filename)


def _file(folder: Path, filename: str):
    if not filename.endswith(SERVED):
        raise NotFound(f"No dashboard file '{filename}'.")
    # send_from_directory refuses names outside the folder (`..`, absolute paths)
    response = send_from_directory(folder, filename, max_age=0)
    response.headers.update(HEADERS)
    return response
