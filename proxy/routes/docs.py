"""GET /openapi.json (the document, proxy/openapi), /docs (Swagger UI) and /redoc
(ReDoc), served without a key: they describe the API and hold no secret nor any
configuration (only whether keys are on, which any request finds out).

The pages load only files the gateway serves: Swagger UI from the
`swagger-ui-bundle-v2` package, ReDoc vendored in proxy/static/vendor/redoc
(SOURCE.md there), Swagger UI's starter from proxy/static/docs. A fixed table
names every file served, so nothing else on disk can be asked for."""
from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint, Response, current_app, send_file

from proxy import openapi
from proxy.errors import NotFound

bp = Blueprint("docs", __name__)

STATIC = Path(__file__).resolve().parent.parent / "static"
SWAGGER_UI = Path(str(swagger_ui_bundle.swagger_ui_path))
ASSETS = {
    "swagger-ui.css": SWAGGER_UI / "swagger-ui.css",
    "swagger-ui-bundle.js": SWAGGER_UI / "swagger-ui-bundle.js",
    "favicon-32x32.png": SWAGGER_UI / "favicon-32x32.png",
    "docs.js": STATIC / "docs" / "docs.js",
    "redoc.standalone.js": STATIC / "vendor" / "redoc" / "redoc.standalone.js",
}
_MISSING = [str(path) for path in ASSETS.values() if not path.is_file()]
if _MISSING:  # a package upgrade that moved a file: refuse to start rather than serve blank pages
    raise RuntimeError(f"the API docs pages need files that are missing: {', '.join(_MISSING)}")

# As strict as each page allows (tests/test_openapi.py drives both in Chromium and
# fails on any violation): both draw icons from data: URLs; ReDoc's styled-components
# add <style> elements and its search runs in a blob: worker. Its "API docs by
# Redocly" logo (cdn.redoc.ly) is refused, so the link shows as text alone.
_COMMON = ("default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _html(head: list[str], body: list[str]) -> bytes:
    """A page; its URLs are relative, so it works wherever the gateway is mounted."""
    head = ['<meta charset="utf-8">', '<title>Switchboard API</title>',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">', *head]
    indent = "\n  "
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>{indent}{indent.join(head)}\n</head>\n'
            f'<body>{indent}{indent.join(body)}\n</body>\n</html>\n').encode()


# name -> (the page, its Content-Security-Policy)
PAGES = {
    "docs": (_html(['<link rel="stylesheet" href="docs/assets/swagger-ui.css">'],
                   ['<div id="swagger-ui"></div>',
                    '<script src="docs/assets/swagger-ui-bundle.js"></script>',
                    '<script src="docs/assets/docs.js"></script>']),
             f"{_COMMON}; style-src 'self'"),
    "redoc": (_html([], ['<redoc spec-url="openapi.json"></redoc>',
                         '<script src="docs/assets/redoc.standalone.js"></script>']),
              f"{_COMMON}; style-src 'self' 'unsafe-inline'; worker-src blob:"),
}
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}


@bp.get("/openapi.json")
def document():
    body = openapi.encoded(current_app.extensions["switchboard"].keys.enabled)
    return Response(body, mimetype="application/json", headers=HEADERS)


@bp.get("/docs")
def swagger_ui():
    return _page("docs")


@bp.get("/redoc")
def redoc():
    return _page("redoc")


@bp.get("/docs/assets/<path:filename>")
def asset(filename: str):
    path = ASSETS.get(filename)
    if path is None:
        raise NotFound(f"No docs file '{filename}'.")
    response = send_file(path, max_age=0)  # revalidated by ETag: an upgrade shows at once
    response.headers.update(HEADERS)
    return response


def _page(name: str):
    page, policy = PAGES[name]
    return Response(page, mimetype="text/html",
                    headers={**HEADERS, "Content-Security-Policy": policy})
