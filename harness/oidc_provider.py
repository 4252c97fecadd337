"""A real OpenID Connect provider for tests: authlib's authorization server on Flask, served on loopback in a thread.

It speaks the authorization-code flow with PKCE and nonce, signs RS256 ID tokens with a key it publishes at
its JWKS endpoint, serves a discovery document and a userinfo endpoint, and auto-approves the configured
`user` at its authorize endpoint (or refuses, when `approve` is false). Knobs let a test break one thing at a
time: expire the codes already issued, sign with a key it does not publish, or override ID-token claims.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, OAuth2Error, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, Response, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

SCOPES = ("openid", "email", "profile", "groups")


@dataclass
class ProviderUser:
    """The person the provider signs in."""

    sub: str
    email: str
    name: str
    groups: list[str] = field(default_factory=list)
    email_verified: bool = True


@dataclass
class _Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return bool(self.client_secret) and client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: ProviderUser
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return None


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Test output stays readable: no access log."""


class OIDCProvider:
    """Start with `with OIDCProvider(...) as provider:`; `provider.issuer` is its http://127.0.0.1:<port> URL."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uris: list[str],
        user: ProviderUser | None = None,
        code_lifetime: int = 600,
    ) -> None:
        self.client = _Client(client_id, client_secret, list(redirect_uris))
        self.user = user or ProviderUser(sub="u-1", email="ann@school.test", name="Ann Example")
        self.approve = True
        # When false, the ID token carries only "sub" and the rest comes from the userinfo endpoint.
        self.profile_in_id_token = True
        # Claims forced into the next ID tokens (e.g. a foreign "aud"), applied last.
        self.id_token_overrides: dict[str, Any] = {}
        self.sign_with_unpublished_key = False
        self.code_lifetime = code_lifetime
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig"}, private=True)
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig"}, private=True)
        self.token_requests = 0
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, tuple[ProviderUser, str]] = {}
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.issuer = ""

    # --- knobs for tests ---------------------------------------------------------------------------

    def expire_codes(self) -> None:
        """Every code issued so far is now past its lifetime, as if the learner waited too long."""
        with self._lock:
            for code in self._codes.values():
                code.expires_at = 0.0

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> OIDCProvider:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        app = self._build_app()
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        app.config["ISSUER"] = self.issuer
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-provider", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- the authorization server ------------------------------------------------------------------

    def _user_claims(self, user: ProviderUser, scope: str) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": user.sub}
        scopes = scope.split()
        if "email" in scopes:
            claims["email"] = user.email
            claims["email_verified"] = user.email_verified
        if "profile" in scopes:
            claims["name"] = user.name
        if "groups" in scopes or "profile" in scopes:
            claims["groups"] = list(user.groups)
        return claims

    def _build_server(self, app: Flask) -> AuthorizationServer:
        provider = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, request: Any) -> None:
                payload = request.payload
                with provider._lock:
                    provider._codes[code] = _Code(
                        code=code,
                        client_id=request.client.get_client_id(),
                        redirect_uri=payload.redirect_uri or "",
                        scope=request.client.get_allowed_scope(payload.scope or ""),
                        user=request.user,
                        nonce=payload.data.get("nonce"),
                        code_challenge=payload.data.get("code_challenge"),
                        code_challenge_method=payload.data.get("code_challenge_method"),
                        auth_time=int(time.time()),
                        expires_at=time.time() + provider.code_lifetime,
                    )

            def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
                with provider._lock:
                    found = provider._codes.get(code)
                if found is None or found.client_id != client.client_id or found.expires_at <= time.time():
                    return None
                return found

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                with provider._lock:
                    provider._codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> ProviderUser:
                return authorization_code.user

        class IDTokens(OpenIDCode):
            def exists_nonce(self, nonce: str, request: Any) -> bool:
                with provider._lock:
                    return any(c.nonce == nonce for c in provider._codes.values())

            def resolve_client_private_key(self, client: _Client) -> RSAKey:
                return provider.rogue_key if provider.sign_with_unpublished_key else provider.key

            def get_client_claims(self, client: _Client) -> dict[str, Any]:
                return {"iss": provider.issuer, "aud": [client.client_id]}

            def get_encode_header(self, client: _Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": "test-key-1"}

            def get_client_algorithm(self, client: _Client) -> str:
                return "RS256"

            def generate_user_info(self, user: ProviderUser, scope: str) -> UserInfo:
                claims = provider._user_claims(user, scope) if provider.profile_in_id_token else {"sub": user.sub}
                claims.update(provider.id_token_overrides)
                return UserInfo(claims)

        def query_client(client_id: str) -> _Client | None:
            return provider.client if client_id == provider.client.client_id else None

        def save_token(token: dict[str, Any], request: Any) -> None:
            with provider._lock:
                provider._tokens[token["access_token"]] = (request.user, token.get("scope", ""))

        server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
        server.register_grant(CodeGrant, [IDTokens(require_nonce=True), CodeChallenge(required=True)])
        return server

    def _build_app(self) -> Flask:
        app = Flask("oidc_provider")
        server = self._build_server(app)
        provider = self

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Response:
            issuer = provider.issuer
            return jsonify(
                {
                    "issuer": issuer,
                    "authorization_endpoint": f"{issuer}/authorize",
                    "token_endpoint": f"{issuer}/token",
                    "userinfo_endpoint": f"{issuer}/userinfo",
                    "jwks_uri": f"{issuer}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "scopes_supported": list(SCOPES),
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                    "code_challenge_methods_supported": ["S256"],
                    "claims_supported": ["sub", "email", "email_verified", "name", "groups"],
                }
            )

        @app.get("/jwks")
        def jwks() -> Response:
            return jsonify({"keys": [provider.key.as_dict(private=False)]})

        @app.get("/authorize")
        def authorize() -> Any:
            # No login page: the configured user is already "signed in" at the school and consents.
            end_user = provider.user if provider.approve else None
            try:
                grant = server.get_consent_grant(end_user=end_user)
            except OAuth2Error as error:
                # An unknown client or redirect URI is shown to the person, never redirected (RFC 6749 4.1.2.1).
                return jsonify(dict(error.get_body())), error.status_code
            return server.create_authorization_response(grant_user=end_user, grant=grant)

        @app.post("/token")
        def token() -> Any:
            with provider._lock:
                provider.token_requests += 1
            return server.create_token_response()

        @app.get("/userinfo")
        def userinfo() -> Any:
            auth = request.headers.get("Authorization", "")
            with provider._lock:
                found = (
                    provider._tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
                )
            if found is None:
                return jsonify({"error": "invalid_token"}), 401
            user, scope = found
            return jsonify(provider._user_claims(user, scope))

        return app
