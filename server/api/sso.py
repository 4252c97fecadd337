"""OpenID Connect single sign-on: the redirect to the school's provider and the callback that signs one in.

The flow is the authorization-code flow with a `state` (bound to this browser's session cookie), a `nonce`
(bound into the ID token) and PKCE (S256). authlib's httpx client builds the authorization URL and exchanges
the code; the ID token's signature is checked against the provider's JWKS (joserfc, which authlib itself uses)
and its claims (issuer, audience, expiry, nonce, azp, at_hash) by authlib's `CodeIDToken`.

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

The provider's discovery document and key set are fetched at first use and kept on the app's state (`extras`);
the key set is fetched again once when a token names a key it does not hold, so key rotation needs no restart.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from quart import Blueprint, Response, request, session

from server import accounts
from server.api.auth import sign_in
from server.errors import Conflict, Forbidden, NotFound
from server.plans import PLANS
from server.settings import SSOSettings
from server.state import AppState, get_state

log = logging.getLogger(__name__)

bp = Blueprint("sso", __name__, url_prefix="/api/auth/sso")

CALLBACK_PATH = "/api/auth/sso/callback"
SIGNIN_PATH = "/signin"
# Keys on AppState.extras; the cache lives as long as the app, never in a module global.
METADATA_KEY = "sso.metadata"
KEYS_KEY = "sso.jwks"
# The session key holding sign-ins in progress, by state; a few so two tabs can sign in at once.
PENDING_KEY = "sso_pending"
MAX_PENDING = 3
PENDING_SECONDS = 600
HTTP_TIMEOUT = 10.0
# Tolerated clock difference with the provider when checking exp/iat.
LEEWAY_SECONDS = 60
# Symmetric and "none" signatures are never accepted for ID tokens: only keys published in the JWKS count.
ASYMMETRIC_ALGORITHMS = frozenset("RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA".split())


class SSOFailure(Exception):
    """A sign-in that cannot go on; `code` is what the sign-in page is told, `detail` is for the log."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def _sso_settings() -> SSOSettings:
    sso = get_state().settings.auth.sso
    if not sso.enabled:
        raise NotFound("sso_disabled", "Single sign-on is not enabled on this server.")
    return sso


def safe_next(value: str | None) -> str:
    """A same-site path to land on after sign-in; anything that could leave the site becomes "/"."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return "/"
    # Browsers read a backslash as a slash, and control characters can smuggle a scheme or host in.
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


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


def _redirect_uri(state: AppState) -> str:
    public_url = state.settings.server.public_url.rstrip("/")
    base = public_url if public_url else request.host_url.rstrip("/")
    return base + CALLBACK_PATH


def _oauth_client(sso: SSOSettings, redirect_uri: str) -> Any:
    """authlib's async OAuth 2 client for this provider (an httpx client; use it with `async with`)."""
    secret = sso.client_secret.get_secret_value() if sso.client_secret is not None else None
    return AsyncOAuth2Client(
        client_id=sso.client_id,
        client_secret=secret or None,
        # A client without a secret is a public client: PKCE is what binds the code to us.
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        scope=sso.scopes,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        timeout=HTTP_TIMEOUT,
    )


def _use_supported_auth(client: Any, metadata: Mapping[str, Any]) -> None:
    """Authenticate at the token endpoint the way the provider says it accepts (Basic is the default)."""
    supported = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if client.client_secret and "client_secret_basic" not in supported and "client_secret_post" in supported:
        client.token_endpoint_auth_method = "client_secret_post"


def _get_json(response: Any, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise SSOFailure("sso_unavailable", f"{what} answered HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError as exc:
        raise SSOFailure("sso_unavailable", f"{what} is not JSON") from exc
    if not isinstance(data, dict):
        raise SSOFailure("sso_unavailable", f"{what} is not a JSON object")
    return data


async def provider_metadata(state: AppState, client: Any) -> dict[str, Any]:
    """The provider's discovery document, fetched once per app and checked against the configured issuer."""
    cached: dict[str, Any] | None = state.extras.get(METADATA_KEY)
    if cached is not None:
        return cached
    sso = state.settings.auth.sso
    if not sso.issuer or not sso.client_id:
        raise SSOFailure("sso_unavailable", "auth.sso.issuer and auth.sso.client_id must both be set")
    url = sso.issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = await client.request("GET", url, withhold_token=True)
    except httpx2.HTTPError as exc:
        raise SSOFailure("sso_unavailable", f"discovery at {url} failed: {exc!r}") from exc
    metadata = _get_json(response, f"discovery at {url}")
    # OpenID Connect Discovery 4.3: the document's issuer must be the one we asked; otherwise a provider could
    # speak for another.
    if str(metadata.get("issuer", "")).rstrip("/") != sso.issuer.rstrip("/"):
        raise SSOFailure("sso_unavailable", f"discovery issuer {metadata.get('issuer')!r} != {sso.issuer!r}")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(metadata.get(key), str) or not metadata[key]:
            raise SSOFailure("sso_unavailable", f"discovery document has no {key}")
    state.extras[METADATA_KEY] = metadata
    return metadata


async def _key_set(state: AppState, client: Any, metadata: Mapping[str, Any], *, refresh: bool = False) -> KeySet:
    cached: KeySet | None = state.extras.get(KEYS_KEY)
    if cached is not None and not refresh:
        return cached
    try:
        response = await client.request("GET", metadata["jwks_uri"], withhold_token=True)
    except httpx2.HTTPError as exc:
        raise SSOFailure("sso_unavailable", f"key set fetch failed: {exc!r}") from exc
    try:
        keys = KeySet.import_key_set(_get_json(response, "key set"))  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise SSOFailure("sso_unavailable", f"key set is not a valid JWKS: {exc!r}") from exc
    state.extras[KEYS_KEY] = keys
    return keys


async def validate_id_token(
    state: AppState, client: Any, metadata: Mapping[str, Any], token: Mapping[str, Any], nonce: str
) -> dict[str, Any]:
    """The ID token's claims once its signature, issuer, audience, times and nonce all check out."""
    raw = token.get("id_token")
    if not isinstance(raw, str) or not raw:
        raise SSOFailure("sso_invalid_token", "the token response has no id_token (is 'openid' in the scopes?)")
    offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [alg for alg in offered if alg in ASYMMETRIC_ALGORITHMS] or ["RS256"]
    sso = state.settings.auth.sso
    try:
        keys = await _key_set(state, client, metadata)
        try:
            decoded = jwt.decode(raw, keys, algorithms=algorithms)
        except InvalidKeyIdError:
            # The provider may have rotated its keys since we cached them.
            keys = await _key_set(state, client, metadata, refresh=True)
            decoded = jwt.decode(raw, keys, algorithms=algorithms)
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": metadata["issuer"]},
                "aud": {"essential": True, "value": sso.client_id},
                "sub": {"essential": True},
            },
            {"nonce": nonce, "client_id": sso.client_id, "access_token": token.get("access_token")},
        )
        claims.validate(leeway=LEEWAY_SECONDS)
    except (JoseError, ValueError) as exc:
        raise SSOFailure("sso_invalid_token", f"ID token rejected: {exc!r}") from exc
    return dict(claims)


async def _with_userinfo(
    state: AppState, client: Any, metadata: Mapping[str, Any], claims: dict[str, Any]
) -> dict[str, Any]:
    """Fill claims the ID token left out (many providers keep email and groups for the userinfo endpoint)."""
    plan_claim = state.settings.auth.sso.plan_claim
    missing = "email" not in claims or (plan_claim and _claim(claims, plan_claim) is None)
    endpoint = metadata.get("userinfo_endpoint")
    if not missing or not isinstance(endpoint, str) or not endpoint or client.token is None:
        return claims
    try:
        response = await client.request("GET", endpoint)
    except (httpx2.HTTPError, OAuthError) as exc:
        raise SSOFailure("sso_unavailable", f"userinfo failed: {exc!r}") from exc
    info = _get_json(response, "userinfo")
    # OpenID Connect Core 5.3.2: a userinfo answer about someone else must not be used.
    if info.get("sub") != claims["sub"]:
        raise SSOFailure("sso_invalid_token", "userinfo sub differs from the ID token's")
    return {**info, **claims}


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (e.g. Keycloak's `realm_access.roles`)."""
    if name in claims:
        return claims[name]
    node: Any = claims
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def plan_from_claims(sso: SSOSettings, claims: Mapping[str, Any]) -> str | None:
    """The highest plan the claim's values map to; None when nothing maps (the plan stays as it is)."""
    if not sso.plan_claim or not sso.plan_map:
        return None
    raw = _claim(claims, sso.plan_claim)
    values = [raw] if isinstance(raw, str) else [v for v in raw if isinstance(v, str)] if isinstance(raw, list) else []
    mapped = [sso.plan_map[value] for value in values if value in sso.plan_map]
    if not mapped:
        return None
    return max(mapped, key=PLANS.index)


def _identity(claims: Mapping[str, Any]) -> tuple[str, str, str]:
    """(subject, email, name) from the claims; an email the provider says is unverified is not trusted."""
    subject = str(claims["sub"])
    email = claims.get("email")
    verified = claims.get("email_verified", True)
    # An unverified email could name someone else's local account, which sign-in would then link.
    if not isinstance(email, str) or verified is False or str(verified).lower() == "false":
        email = ""
    name = claims.get("name")
    if not isinstance(name, str) or not name.strip():
        given, family = claims.get("given_name"), claims.get("family_name")
        parts = [p for p in (given, family) if isinstance(p, str) and p.strip()]
        name = " ".join(parts) or str(claims.get("preferred_username") or "")
    return subject, email.strip(), name.strip()


def _remember(state_value: str, entry: dict[str, Any]) -> None:
    pending: dict[str, Any] = dict(session.get(PENDING_KEY) or {})
    now = time.time()
    fresh = {k: v for k, v in pending.items() if isinstance(v, dict) and now - v.get("t", 0) < PENDING_SECONDS}
    fresh[state_value] = entry
    # Keep only the newest few so the cookie stays small.
    newest = sorted(fresh.items(), key=lambda item: item[1].get("t", 0))[-MAX_PENDING:]
    session[PENDING_KEY] = dict(newest)


def _take_pending(state_value: str | None) -> dict[str, Any] | None:
    """The sign-in this state belongs to, removed so a callback URL works once."""
    pending: dict[str, Any] = dict(session.get(PENDING_KEY) or {})
    entry = pending.pop(state_value, None) if state_value else None
    if pending:
        session[PENDING_KEY] = pending
    else:
        session.pop(PENDING_KEY, None)
    if not isinstance(entry, dict) or time.time() - entry.get("t", 0) >= PENDING_SECONDS:
        return None
    return entry


@bp.get("/login")
async def login() -> Response:
    """Send the browser to the provider's sign-in page; `?next=/path` is where to land afterwards."""
    sso = _sso_settings()
    state = get_state()
    next_path = safe_next(request.args.get("next"))
    redirect_uri = _redirect_uri(state)
    state_value = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)
    async with _oauth_client(sso, redirect_uri) as client:
        try:
            metadata = await provider_metadata(state, client)
        except SSOFailure as failure:
            log.warning("single sign-on could not start: %s", failure)
            return _to_signin(failure.code, next_path)
        url, _ = client.create_authorization_url(
            metadata["authorization_endpoint"], state=state_value, code_verifier=verifier, nonce=nonce
        )
    _remember(state_value, {"nonce": nonce, "verifier": verifier, "next": next_path, "t": time.time()})
    return _redirect(url)


@bp.get("/callback")
async def callback() -> Response:
    """Where the provider sends the browser back: check everything, sign the learner in, go on to `next`."""
    sso = _sso_settings()
    state = get_state()
    entry = _take_pending(request.args.get("state"))
    if entry is None:
        log.warning("single sign-on callback with an unknown or expired state")
        return _to_signin("sso_state_mismatch")
    next_path = safe_next(entry.get("next"))
    error = request.args.get("error")
    if error:
        log.info("single sign-on refused by the provider: %s %s", error, request.args.get("error_description", ""))
        return _to_signin("sso_denied" if error == "access_denied" else "sso_provider_error", next_path)
    code = request.args.get("code")
    if not code:
        return _to_signin("sso_provider_error", next_path)
    try:
        user = await _complete(state, sso, code, entry)
    except SSOFailure as failure:
        log.warning("single sign-on failed: %s", failure)
        return _to_signin(failure.code, next_path)
    await sign_in(user)
    return _redirect(next_path)


async def _complete(state: AppState, sso: SSOSettings, code: str, entry: Mapping[str, Any]) -> accounts.CurrentUser:
    redirect_uri = _redirect_uri(state)
    async with _oauth_client(sso, redirect_uri) as client:
        metadata = await provider_metadata(state, client)
        _use_supported_auth(client, metadata)
        try:
            token = await client.fetch_token(
                metadata["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=entry.get("verifier"),
            )
        except OAuthError as exc:
            raise SSOFailure("sso_exchange_failed", f"token endpoint refused the code: {exc!r}") from exc
        except httpx2.HTTPStatusError as exc:
            failure = "sso_unavailable" if exc.response.status_code >= 500 else "sso_exchange_failed"
            raise SSOFailure(failure, f"token endpoint answered HTTP {exc.response.status_code}") from exc
        except (httpx2.HTTPError, ValueError) as exc:
            raise SSOFailure("sso_unavailable", f"token endpoint failed: {exc!r}") from exc
        claims = await validate_id_token(state, client, metadata, token, str(entry.get("nonce", "")))
        claims = await _with_userinfo(state, client, metadata, claims)
    subject, email, name = _identity(claims)
    try:
        return await accounts.sso_sign_in(
            state.db,
            issuer=str(metadata["issuer"]),
            subject=subject,
            email=email,
            name=name,
            plan=plan_from_claims(sso, claims),
            default_plan=state.settings.plans.default_plan,
        )
    except Conflict as exc:
        raise SSOFailure("sso_email_taken", exc.message) from exc
    except Forbidden as exc:
        raise SSOFailure("account_disabled", exc.message) from exc
