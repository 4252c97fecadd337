"""OpenID Connect single sign-on: discovery, the code exchange, the ID token's checks and the plan and role its claims
map to.

The flow is the authorization-code flow with a `state` (bound to the browser by the route's cookie), a `nonce`
(bound into the ID token) and PKCE (S256). authlib's httpx client builds the authorization URL and exchanges
the code; the ID token's signature is checked against the provider's JWKS (joserfc, which authlib itself uses)
and its claims (issuer, audience, expiry, nonce, azp, at_hash) by authlib's `CodeIDToken`.

The provider's discovery document and key set are fetched at first use and kept in a `ProviderCache` that lives
as long as the app; the key set is fetched again once when a token names a key it does not hold, so key
rotation needs no restart. Every failure is an `SSOFailure` whose `code` is what the sign-in page is told.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from server import accounts
from server.accounts import ROLES
from server.errors import Conflict, Forbidden, NotFound
from server.plans import PLANS
from server.settings import Settings, SSOSettings
from server.store.db import Database

CALLBACK_PATH = "/api/auth/sso/callback"
# Sign-ins in progress are kept per browser by state; a few so two tabs can sign in at once.
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


@dataclass
class ProviderCache:
    """The provider's discovery document and key set, fetched once per app (never a module global)."""

    metadata: dict[str, Any] | None = None
    keys: KeySet | None = None


@dataclass(frozen=True)
class Started:
    """Where to send the browser, and the sign-in to remember (by `state`) until the provider sends it back."""

    url: str
    state: str
    pending: dict[str, Any]


def enabled_settings(settings: Settings) -> SSOSettings:
    """The SSO settings, or 404 `sso_disabled` when single sign-on is switched off."""
    sso = settings.auth.sso
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


def redirect_uri(settings: Settings, request_base_url: str) -> str:
    """Our callback URL: under the configured public URL, else under the URL the request came in on."""
    public_url = settings.server.public_url.rstrip("/")
    base = public_url if public_url else request_base_url.rstrip("/")
    return base + CALLBACK_PATH


def remember(pending: Mapping[str, Any], state: str, entry: dict[str, Any], now: float) -> dict[str, Any]:
    """The sign-ins in progress with this one added; expired ones dropped and only the newest few kept."""
    fresh = {k: v for k, v in pending.items() if isinstance(v, dict) and now - v.get("t", 0) < PENDING_SECONDS}
    fresh[state] = entry
    # Keep only the newest few so the cookie stays small.
    newest = sorted(fresh.items(), key=lambda item: item[1].get("t", 0))[-MAX_PENDING:]
    return dict(newest)


def take(pending: Mapping[str, Any], state: str | None, now: float) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the sign-in this state belongs to, or None when unknown or expired; the ones left), so a callback works once."""
    left = dict(pending)
    entry = left.pop(state, None) if state else None
    if not isinstance(entry, dict) or now - entry.get("t", 0) >= PENDING_SECONDS:
        return None, left
    return entry, left


def provider_refusal(error: str) -> str:
    """The sign-in page's code for an error the provider sent back instead of a code."""
    return "sso_denied" if error == "access_denied" else "sso_provider_error"


def _oauth_client(sso: SSOSettings, callback_url: str) -> Any:
    """authlib's async OAuth 2 client for this provider (an httpx client; use it with `async with`)."""
    secret = sso.client_secret.get_secret_value() if sso.client_secret is not None else None
    return AsyncOAuth2Client(
        client_id=sso.client_id,
        client_secret=secret or None,
        # A client without a secret is a public client: PKCE is what binds the code to us.
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        scope=sso.scopes,
        redirect_uri=callback_url,
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


async def provider_metadata(sso: SSOSettings, cache: ProviderCache, client: Any) -> dict[str, Any]:
    """The provider's discovery document, fetched once per app and checked against the configured issuer."""
    if cache.metadata is not None:
        return cache.metadata
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
    cache.metadata = metadata
    return metadata


async def _key_set(cache: ProviderCache, client: Any, metadata: Mapping[str, Any], *, refresh: bool = False) -> KeySet:
    if cache.keys is not None and not refresh:
        return cache.keys
    try:
        response = await client.request("GET", metadata["jwks_uri"], withhold_token=True)
    except httpx2.HTTPError as exc:
        raise SSOFailure("sso_unavailable", f"key set fetch failed: {exc!r}") from exc
    try:
        keys = KeySet.import_key_set(_get_json(response, "key set"))  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise SSOFailure("sso_unavailable", f"key set is not a valid JWKS: {exc!r}") from exc
    cache.keys = keys
    return keys


async def validate_id_token(
    sso: SSOSettings,
    cache: ProviderCache,
    client: Any,
    metadata: Mapping[str, Any],
    token: Mapping[str, Any],
    nonce: str,
) -> dict[str, Any]:
    """The ID token's claims once its signature, issuer, audience, times and nonce all check out."""
    raw = token.get("id_token")
    if not isinstance(raw, str) or not raw:
        raise SSOFailure("sso_invalid_token", "the token response has no id_token (is 'openid' in the scopes?)")
    offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [alg for alg in offered if alg in ASYMMETRIC_ALGORITHMS] or ["RS256"]
    try:
        keys = await _key_set(cache, client, metadata)
        try:
            decoded = jwt.decode(raw, keys, algorithms=algorithms)
        except InvalidKeyIdError:
            # The provider may have rotated its keys since we cached them.
            keys = await _key_set(cache, client, metadata, refresh=True)
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
    sso: SSOSettings, client: Any, metadata: Mapping[str, Any], claims: dict[str, Any]
) -> dict[str, Any]:
    """Fill claims the ID token left out (many providers keep email and groups for the userinfo endpoint)."""
    missing = (
        "email" not in claims
        or (sso.plan_claim and _claim(claims, sso.plan_claim) is None)
        or (sso.role_claim and _claim(claims, sso.role_claim) is None)
    )
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


def _highest(claims: Mapping[str, Any], claim: str, mapping: Mapping[str, str], order: Sequence[str]) -> str | None:
    """The highest (by `order`) of what the claim's values map to; None when nothing maps."""
    if not claim or not mapping:
        return None
    raw = _claim(claims, claim)
    values = [raw] if isinstance(raw, str) else [v for v in raw if isinstance(v, str)] if isinstance(raw, list) else []
    mapped = [mapping[value] for value in values if value in mapping]
    return max(mapped, key=order.index) if mapped else None


def plan_from_claims(sso: SSOSettings, claims: Mapping[str, Any]) -> str | None:
    """The highest plan the claim's values map to; None when nothing maps (the plan stays as it is)."""
    return _highest(claims, sso.plan_claim, sso.plan_map, PLANS)


def role_from_claims(sso: SSOSettings, claims: Mapping[str, Any]) -> str | None:
    """The highest role (learner < teacher < admin) the claim's values map to; None when nothing maps (the role
    stays as it is, so one set in the administrator's page holds)."""
    return _highest(claims, sso.role_claim, sso.role_map, ROLES)


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


async def begin(settings: Settings, cache: ProviderCache, callback_url: str, next_path: str, now: float) -> Started:
    """Start a sign-in: the provider's authorization URL, and what to remember until the callback."""
    sso = settings.auth.sso
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)
    async with _oauth_client(sso, callback_url) as client:
        metadata = await provider_metadata(sso, cache, client)
        url, _ = client.create_authorization_url(
            metadata["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
        )
    return Started(url, state, {"nonce": nonce, "verifier": verifier, "next": next_path, "t": now})


async def complete(
    db: Database,
    settings: Settings,
    cache: ProviderCache,
    callback_url: str,
    code: str,
    pending: Mapping[str, Any],
) -> accounts.CurrentUser:
    """Exchange the code, check the ID token and sign the identity in (its account found, linked or created)."""
    sso = settings.auth.sso
    async with _oauth_client(sso, callback_url) as client:
        metadata = await provider_metadata(sso, cache, client)
        _use_supported_auth(client, metadata)
        try:
            token = await client.fetch_token(
                metadata["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=pending.get("verifier"),
            )
        except OAuthError as exc:
            raise SSOFailure("sso_exchange_failed", f"token endpoint refused the code: {exc!r}") from exc
        except httpx2.HTTPStatusError as exc:
            failure = "sso_unavailable" if exc.response.status_code >= 500 else "sso_exchange_failed"
            raise SSOFailure(failure, f"token endpoint answered HTTP {exc.response.status_code}") from exc
        except (httpx2.HTTPError, ValueError) as exc:
            raise SSOFailure("sso_unavailable", f"token endpoint failed: {exc!r}") from exc
        claims = await validate_id_token(sso, cache, client, metadata, token, str(pending.get("nonce", "")))
        claims = await _with_userinfo(sso, client, metadata, claims)
    subject, email, name = _identity(claims)
    try:
        return await accounts.sso_sign_in(
            db,
            issuer=str(metadata["issuer"]),
            subject=subject,
            email=email,
            name=name,
            plan=plan_from_claims(sso, claims),
            default_plan=settings.plans.default_plan,
            role=role_from_claims(sso, claims),
        )
    except Conflict as exc:
        raise SSOFailure("sso_email_taken", exc.message) from exc
    except Forbidden as exc:
        raise SSOFailure("account_disabled", exc.message) from exc
