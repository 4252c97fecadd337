"""Public system routes: health, readiness, metrics, the page's configuration, plans and the API docs."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response, request

from server import accounts, plans
from server.api import voices
from server.api.auth import load_user
from server.companions import SUBJECTS
from server.errors import Forbidden, Unauthorized
from server.state import get_state

bp = Blueprint("system", __name__)

DOCS_STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111}
code,pre{background:#f3f3f3;border-radius:4px;padding:.1rem .3rem}pre{padding:.6rem;overflow:auto}
h2{margin-top:2rem;border-bottom:1px solid #ddd}.m{font-weight:700;display:inline-block;width:4.5rem}"""
DOCS_SCRIPT = """
fetch('/openapi.json').then(r => r.json()).then(spec => {
  const out = document.getElementById('ops'); out.textContent = '';
  for (const [path, ops] of Object.entries(spec.paths)) {
    const h = document.createElement('h2'); h.textContent = path; out.append(h);
    for (const [method, op] of Object.entries(ops)) {
      const d = document.createElement('details'); const s = document.createElement('summary');
      s.innerHTML = '<span class="m"></span>'; s.firstChild.textContent = method.toUpperCase();
      s.append(op.summary || op.description || op.operationId || ''); d.append(s);
      const pre = document.createElement('pre'); pre.textContent = JSON.stringify(op, null, 2); d.append(pre);
      out.append(d);
    }
  }
});
"""
DOCS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Voice Tutor API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{DOCS_STYLE}</style>
</head><body><h1>Voice Tutor API</h1>
<p>Generated from <a href="/openapi.json">/openapi.json</a>.
Errors are <code>{{"error": {{"code", "message"}}}}</code>.</p>
<div id="ops">Loading&hellip;</div>
<script>{DOCS_SCRIPT}</script></body></html>"""


def _sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# The page is one self-contained document, so its own policy allows exactly its one inline script and style by
# hash (never 'unsafe-inline'), and nothing else but reading the OpenAPI document.
DOCS_POLICY = (
    f"default-src 'none'; script-src {_sha256_source(DOCS_SCRIPT)}; style-src {_sha256_source(DOCS_STYLE)}; "
    "connect-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@bp.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
async def readyz() -> tuple[dict[str, Any], int]:
    try:
        await get_state().db.ping()
    except Exception as exc:  # any driver error means "not ready", reported rather than raised
        return {"status": "unavailable", "database": f"unreachable: {type(exc).__name__}"}, 503
    return {"status": "ready", "database": "ok"}, 200


@bp.get("/metrics")
async def metrics() -> Response:
    """Prometheus metrics, for a scraper holding the configured token or a signed-in administrator."""
    token = get_state().settings.observability.metrics_token
    offered = request.headers.get("Authorization", "")
    if token is None or not hmac.compare_digest(offered, f"Bearer {token.get_secret_value()}"):
        await _require_admin()
    return Response(generate_latest(get_state().metrics), content_type=CONTENT_TYPE_LATEST)


async def _require_admin() -> None:
    user = await load_user()
    if user is None:
        raise Unauthorized()
    if not user.is_admin:
        raise Forbidden("admin_only", "Only an administrator or the metrics token may read metrics.")


@bp.get("/docs")
async def docs() -> Response:
    response = Response(DOCS_PAGE, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = DOCS_POLICY
    return response


@bp.get("/api/config")
async def config() -> dict[str, Any]:
    """What the page needs before sign-in: sign-in options, the voice backend, subjects and plans."""
    state = get_state()
    settings = state.settings
    sso = settings.auth.sso
    # The page tells learners when the tutor runs on the bundled demonstration model (the operator's side of
    # it is in the log and `tutor doctor`).
    tutor = await state.voice.tutor_status() if state.voice is not None else None
    return {
        # The administrator's page may have opened or closed sign-up since the server started.
        "registration": await accounts.registration_open(state.db, settings),
        # The sign-up and change-password forms state the rule before the learner types.
        "password_min_length": settings.auth.min_password_length,
        "sso": {"enabled": sso.enabled, "label": sso.button_label, "login_url": "/api/auth/sso/login"},
        "voice": {
            "backend": settings.voice.backend,
            "public_key": settings.vapi.public_key if settings.voice.backend == "vapi" else "",
            "sdk_url": settings.vapi.sdk_url or "/vendor/vapi-web.js",
            "ice_servers": [s.model_dump(exclude_none=True) for s in settings.voice.ice_servers],
            "model": {
                "demo": tutor is not None and tutor.demo,
                "notice": tutor.learner_notice if tutor is not None else "",
            },
        },
        "subjects": list(SUBJECTS),
        "plans": [p.model_dump() for p in plans.all_plans(settings)],
        "lesson_period": settings.plans.lesson_period,
        # The installed voices (`voices`), the default one, and the voice each legacy "male"/"female" speaks with.
        **voices.listed(),
    }


@bp.get("/api/plans")
async def list_plans() -> dict[str, Any]:
    settings = get_state().settings
    return {
        "items": [p.model_dump() for p in plans.all_plans(settings)],
        "lesson_period": settings.plans.lesson_period,
    }
