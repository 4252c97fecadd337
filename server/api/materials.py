"""Material routes: a companion's files, uploaded by its author, listed, downloaded where allowed, and deleted."""

from __future__ import annotations

import re
from io import BytesIO

from pydantic import BaseModel, ConfigDict
from quart import Blueprint, Response, send_file
from quart_schema import DataSource, validate_request, validate_response
from quart_schema.pydantic import File

from server import materials
from server.api.auth import current_user, login_required
from server.materials import MaterialList, MaterialOut, MaterialPatch
from server.settings import Settings
from server.state import get_state

bp = Blueprint("materials", __name__, url_prefix="/api/companions/<int:companion_id>/materials")

# The upload route takes a body as large as a material may be, plus room for the multipart framing; every other
# route keeps the app's 1 MiB (server/app.py).
UPLOAD_PATH = re.compile(r"/api/companions/[^/]+/materials")
MULTIPART_ALLOWANCE = 64 * 1024


def upload_limit(settings: Settings) -> int:
    return settings.materials.max_file_bytes + MULTIPART_ALLOWANCE


class MaterialUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: File
    allow_download: bool = False


def _materials() -> materials.Materials:
    found: materials.Materials = get_state().extras[materials.EXTRAS_KEY]
    return found


@bp.get("")
@login_required
@validate_response(MaterialList)
async def list_materials(companion_id: int) -> MaterialList:
    """The companion's materials: every signed-in learner sees their names, as the tutor cites them."""
    return await _materials().listing(current_user(), companion_id)


@bp.post("")
@login_required
@validate_request(MaterialUpload, source=DataSource.FORM_MULTIPART)
@validate_response(MaterialOut, 201)
async def upload_material(companion_id: int, data: MaterialUpload) -> tuple[MaterialOut, int]:
    """A PDF, Markdown or text file (multipart field `file`), by the companion's author: 201 once it is indexed."""
    content = data.file.read()
    out = await _materials().upload(
        current_user(), companion_id, data.file.filename or "", content, allow_download=data.allow_download
    )
    return out, 201


@bp.patch("/<int:material_id>")
@login_required
@validate_request(MaterialPatch)
@validate_response(MaterialOut)
async def update_material(companion_id: int, material_id: int, data: MaterialPatch) -> MaterialOut:
    return await _materials().set_allow_download(current_user(), companion_id, material_id, data.allow_download)


@bp.delete("/<int:material_id>")
@login_required
async def delete_material(companion_id: int, material_id: int) -> tuple[str, int]:
    """The material with its passages, which leave the index in the same transaction."""
    await _materials().delete(current_user(), companion_id, material_id)
    return "", 204


@bp.get("/<int:material_id>/download")
@login_required
async def download_material(companion_id: int, material_id: int) -> Response:
    """The file as it was uploaded: for its author, and for anyone else only when the author allows it."""
    found = await _materials().download(current_user(), companion_id, material_id)
    response = await send_file(
        BytesIO(found.content), mimetype=found.media_type, as_attachment=True, attachment_filename=found.filename
    )
    # Saved, never shown inside our page's origin: a file's own scripts (a PDF's, an HTML-looking text's) cannot run.
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["Cache-Control"] = "private, no-store"
    return response
