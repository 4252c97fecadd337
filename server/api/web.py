"""The bundled learner page: files under web/, and index.html for every page route so reloads work."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory
from quart_schema import hide
from werkzeug.exceptions import NotFound as HTTPNotFound

from server.errors import NotFound

bp = Blueprint("web", __name__)

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
RESERVED = ("api/", "healthz", "readyz", "metrics", "openapi.json", "docs")


@bp.get("/")
@hide
async def index() -> Response:
    return await _index()


async def _index() -> Response:
    response = await send_from_directory(WEB_DIR, "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/<path:path>")
@hide
async def page(path: str) -> Response:
    if path.startswith(RESERVED):
        raise NotFound("not_found", "No such route.")
    try:
        response = await send_from_directory(WEB_DIR, path)
        response.headers["Cache-Control"] = "no-cache"
        return response
    except HTTPNotFound:
        if "." in path.rsplit("/", 1)[-1]:
            raise NotFound("not_found", "No such file.") from None
        return await _index()
