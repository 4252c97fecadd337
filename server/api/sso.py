"""Single sign-on routes: the redirect to the school's provider and the callback that signs one in.

The protocol itself is in `server/sso.py`; these routes read the query, keep the sign-ins in progress in the
`tutor_sso` cookie session (by `state`, so a callback is bound to the browser that started it), and redirect.

Both routes answer 404 `{"error": {"code": "sso_disabled"}}` when SSO is switched off. Every other failure
happens inside a browser redirect, so it ends as a redirect to the sign-in page with a reason the page can
explain, `/signin?error=<code>` (plus `next` when known), never a JSON error or a traceback:

- `sso_denied`: the learner cancelled at the provider, or the provider refused them (`error=access_denied`);
- `sso_provider_error`: the provider sent back any other error, or no code;
- `sso_state_mismatch`: the callback's `state` is missing, unknown or older than ten minutes (a stale tab,
  blocked cookies, or a forged callback);
- `sso_unavailable`: the provider could not be reached or answered nonsense (discovery, token, keys,
  userinfo), or SSO is enabled without an issuer or client id;
- `sso_exchange_failed`: the provider refused to exchange the code (expired, reused or tampered code, wrong
  client secret, PKCE mismatch);
- `sso_invalid_token`: the ID token failed validation (signature, issuer, audience, expiry, nonce);
- `sso_email_taken`: the email belongs to a different single sign-on account;
- `account_disabled`: an administrator turned the account off (`tutor users disable`).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, request, session

from server import sso
from server.api.auth import sign_in
from server.state import AppState, get_state

log = logging.getLogger(__name__)

bp = Blueprint("sso", __name__, url_prefix="/api/auth/sso")

SIGNIN_PATH = "/signin"
# The key on AppState.extras holding the provider's cached discovery document and keys.
CACHE_KEY = "sso.provider"
# The session key holding sign-ins in progress, by state.
PENDING_KEY = "sso_pending"


def _cache(state: AppState) -> sso.ProviderCache:
    cache = state.extras.get(CACHE_KEY)
    if not isinstance(cache, sso.ProviderCache):
        cache = state.extras[CACHE_KEY] = sso.ProviderCache()
    return cache


def _pending() -> dict[str, Any]:
    stored = session.get(PENDING_KEY)
    return dict(stored) if isinstance(stored, dict) else {}


def _redirect(location: str) -> Response:
    response = Response("", status=302, headers={"Location": location})
    # The answers carry one-time values; no cache may keep them.
    response.headers["Cache-Control"] = "no-store"
    return response


def _to_signin(code: str, next_path: str = "/") -> Response:
    params = {"error": code}
    if next_path != "/":
        params["next"] = next_path
    return _redirect(f"{SIGNIN_PATH}?{urlencode(params)}")


@bp.get("/login")
async def login() -> Response:
    """Send the browser to the provider's sign-in page; `?next=/path` is where to land afterwards."""
    state = get_state()
    sso.enabled_settings(state.settings)
    next_path = sso.safe_next(request.args.get("next"))
    callback_url = sso.redirect_uri(state.settings, request.host_url)
    now = time.time()
    try:
        started = await sso.begin(state.settings, _cache(state), callback_url, next_path, now)
    except sso.SSOFailure as failure:
        log.warning("single sign-on could not start: %s", failure)
        return _to_signin(failure.code, next_path)
    session[PENDING_KEY] = sso.remember(_pending(), started.state, started.pending, now)
    return _redirect(started.url)


@bp.get("/callback")
async def callback() -> Response:
    """Where the provider sends the browser back: check everything, sign the learner in, go on to `next`."""
    state = get_state()
    sso.enabled_settings(state.settings)
    entry, left = sso.take(_pending(), request.args.get("state"), time.time())
    if left:
        session[PENDING_KEY] = left
    else:
        session.pop(PENDING_KEY, None)
    if entry is None:
        log.warning("single sign-on callback with an unknown or expired state")
        return _to_signin("sso_state_mismatch")
    next_path = sso.safe_next(entry.get("next"))
    error = request.args.get("error")
    if error:
        log.info("single sign-on refused by the provider: %s %s", error, request.args.get("error_description", ""))
        return _to_signin(sso.provider_refusal(error), next_path)
    code = request.args.get("code")
    if not code:
        return _to_signin("sso_provider_error", next_path)
    callback_url = sso.redirect_uri(state.settings, request.host_url)
    try:
        user = await sso.complete(state.db, state.settings, _cache(state), callback_url, code, entry)
    except sso.SSOFailure as failure:
        log.warning("single sign-on failed: %s", failure)
        return _to_signin(failure.code, next_path)
    await sign_in(user)
    return _redirect(next_path)
