"""HTTP-level protection for every route: same-origin writes, security headers, and bodies parsed safely once."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from quart import Quart, Response, request
from quart.globals import request_ctx

from server.errors import BadRequest, Forbidden
from server.settings import Settings

# Methods a browser may send cross-site without a preflight only for reading; everything else changes state.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Server-to-server routes that authenticate each request themselves and are never called by a browser.
ORIGIN_EXEMPT_PATHS = frozenset({"/api/vapi/webhook"})
# Routes whose domain strips NUL from the text itself: Vapi's transcripts may carry one, and refusing the message
# would lose the learner's words, which Vapi cannot send again without it.
NUL_CLEANED_PATHS = frozenset({"/api/vapi/webhook"})
# What a browser says about a request it sent from our own page, or that the learner typed themselves.
SAME_ORIGIN_FETCH_SITES = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"http": 80, "https": 443}

# No route takes anything near this deep; the limit keeps parsing and validation far from Python's recursion limit.
MAX_JSON_DEPTH = 64
# Lone surrogates decode from JSON escapes but cannot be stored as UTF-8 (nor as PostgreSQL text or jsonb).
SURROGATE = re.compile("[\ud800-\udfff]")
_NUL_MESSAGE = "must not contain NUL characters"
_SURROGATE_MESSAGE = "must be valid Unicode text"

BASE_POLICY: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "media-src": ["'self'", "blob:"],
    "connect-src": ["'self'"],
    "font-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# Hosted mode: what the @vapi-ai/web SDK (web/vendor/vapi-web.js) reaches. It calls Vapi's API, and its bundled
# daily-js loads Daily's call machine as a script from c.daily.co (the page passes avoidEval, so no 'unsafe-eval')
# which then talks to Daily's API, signalling and media servers (*.daily.co, *.pluot.blue, per Daily's CSP guide)
# and may run workers from blobs.
HOSTED_POLICY: dict[str, list[str]] = {
    "script-src": ["https://c.daily.co"],
    "connect-src": [
        "https://api.vapi.ai",
        "https://*.daily.co",
        "wss://*.daily.co",
        "https://*.pluot.blue",
        "wss://*.pluot.blue",
    ],
    "worker-src": ["'self'", "blob:"],
}

STATIC_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
}


def normalize_origin(url: str) -> str | None:
    """`scheme://host[:port]` in lower case without a default port, or None when `url` has no scheme and host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def content_security_policy(settings: Settings) -> str:
    """The page's policy; hosted mode adds the hosts the Vapi SDK reaches, and the SDK's own when it is remote."""
    policy = {name: list(sources) for name, sources in BASE_POLICY.items()}
    if settings.voice.backend == "vapi":
        for name, sources in HOSTED_POLICY.items():
            policy.setdefault(name, []).extend(s for s in sources if s not in policy.get(name, []))
        sdk_origin = normalize_origin(settings.vapi.sdk_url) if settings.vapi.sdk_url else None
        if sdk_origin is not None:
            policy["script-src"].append(sdk_origin)
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in policy.items())


def _own_origin(public_origin: str | None) -> str | None:
    return public_origin or normalize_origin(f"{request.scheme}://{request.host}")


async def _refuse_cross_origin(public_origin: str | None) -> None:
    origin = request.headers.get("Origin")
    if origin is not None:
        # "null" (sandboxed frames, file: pages, some redirects) normalizes to None and so never matches.
        offered = normalize_origin(origin)
        if offered is not None and offered == _own_origin(public_origin):
            return
    elif request.headers.get("Sec-Fetch-Site", "none") in SAME_ORIGIN_FETCH_SITES:
        # No Origin: a browser saying the request is our page's own (or typed by the learner), or no browser at
        # all (curl, scripts, tests send neither header), so there is no ambient cookie to abuse.
        return
    # A null session is never saved, so this answer sets no cookie and cannot sign the learner out.
    request_ctx.session = await request_ctx.app.session_interface.make_null_session(request_ctx.app)
    raise Forbidden("cross_origin_refused", "This request came from another site and was refused.")


def _refuse_nul_in_address() -> None:
    # Path parameters and query arguments reach file lookups and SQL, which refuse NUL with an exception.
    if "\x00" in request.path:
        raise BadRequest("invalid_path", "The address contains a NUL character.")
    query = request.query_string
    # A NUL reaches the arguments only as "%00" or as the raw byte: without either, they need no decoding here.
    if b"%00" not in query and b"\x00" not in query:
        return
    for key, values in request.args.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            field = key.replace("\x00", "") or "query"
            raise BadRequest("validation_error", f"{field}: {_NUL_MESSAGE}", fields={field: _NUL_MESSAGE})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, *, allow_nul: bool = False) -> Any:
    """Decode a request body as strict UTF-8 JSON, bounded in depth and free of text the database cannot hold."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("invalid_json", "The request body is not valid UTF-8 JSON.") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _too_deep() from None
    except ValueError:
        raise BadRequest("invalid_json", "The request body is not valid JSON.") from None
    _check_tree(data, allow_nul)
    return data


def _too_deep() -> BadRequest:
    return BadRequest("invalid_json", f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.")


def _check_text(value: str, path: list[str | int], allow_nul: bool) -> None:
    nul = not allow_nul and "\x00" in value
    message = _NUL_MESSAGE if nul else _SURROGATE_MESSAGE if SURROGATE.search(value) else None
    if message is not None:
        field = ".".join(str(p) for p in path) or "body"
        raise BadRequest("validation_error", f"{field}: {message}", fields={field: message})


def _check_tree(data: Any, allow_nul: bool) -> None:
    # Iterative, so a body just under the parser's own recursion limit cannot exhaust the stack here either.
    stack: list[tuple[Any, list[str | int]]] = [(data, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            _check_text(node, path, allow_nul)
        elif len(path) >= MAX_JSON_DEPTH and isinstance(node, dict | list):
            raise _too_deep()
        elif isinstance(node, dict):
            for key, value in node.items():
                _check_text(key, path, allow_nul)
                stack.append((value, [*path, key]))
        elif isinstance(node, list):
            stack.extend((value, [*path, index]) for index, value in enumerate(node))


def install(app: Quart, settings: Settings) -> None:
    """Refuse cross-origin writes and NUL-bearing addresses before any route runs; add headers to every answer."""
    public_origin = normalize_origin(settings.server.public_url) if settings.server.public_url else None
    page_policy = content_security_policy(settings)

    async def _guard() -> None:
        if request.method not in SAFE_METHODS and request.path not in ORIGIN_EXEMPT_PATHS:
            await _refuse_cross_origin(public_origin)
        _refuse_nul_in_address()

    every_answer = tuple(
        (name.lower(), name, value)
        for name, value in (("Content-Security-Policy", page_policy), *STATIC_HEADERS.items())
    )

    async def _headers(response: Response) -> Response:
        headers = response.headers
        # One look at what the answer already has, rather than a scan of its headers for each of ours: a route
        # with its own policy (the API docs page) keeps it.
        present = {name.lower() for name in headers.keys()}
        for key, name, value in every_answer:
            if key not in present:
                headers.add(name, value)
        return response

    app.before_request(_guard)
    app.after_request(_headers)
