"""Sign-up, sign-in and sign-out with local accounts, server-side sessions, and the guard every private route uses.

Identity is the `tutor_session` cookie: a random token whose hash names a row of the `sessions` table, looked up
in the request's own transaction. Only logout (and "sign out everywhere") clears that cookie; a refused request,
a 401 included, never sends a Set-Cookie, so a cross-site request cannot sign anyone out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Annotated, Any, ParamSpec, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError
from quart import Blueprint, Response, after_this_request, g, jsonify, request
from quart_schema import validate_request, validate_response
from werkzeug.wrappers import Response as BaseResponse

from server import accounts, sessions
from server.accounts import CurrentUser, UserOut
from server.errors import Forbidden, Unauthorized
from server.sessions import SessionList
from server.signin_throttle import TooManyAttempts
from server.state import get_state

bp = Blueprint("auth", __name__, url_prefix="/api/auth")

P = ParamSpec("P")
R = TypeVar("R")
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
COOKIE = "tutor_session"
# Request bodies may carry a longer password than the rule allows, so the rule's own sentence answers it.
PASSWORD_BODY_LIMIT = 1024
# A password exactly as typed: the model-wide stripping of text fields must not touch it.
Password = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1, max_length=PASSWORD_BODY_LIMIT)]


def _email_shape(value: str) -> str:
    # Said in the learner's words: pydantic's own pattern error quotes the regular expression.
    if re.fullmatch(EMAIL_PATTERN, value) is None:
        raise PydanticCustomError("email_shape", "Enter an e-mail address like name@school.org.")
    return value


# The pattern stays in the OpenAPI document; the check itself is _email_shape's, for its message.
Email = Annotated[
    str, Field(max_length=320, json_schema_extra={"pattern": EMAIL_PATTERN}), AfterValidator(_email_shape)
]


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    email: Email
    password: Password
    name: str = Field(min_length=1, max_length=100)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=320)
    password: Password


class PasswordChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: Password
    new_password: Password


class PasswordChangeOut(BaseModel):
    other_sessions_ended: int


def client_address() -> str:
    """The client's address for the sign-in throttle: the connection's, or the proxy's word for it if trusted.

    X-Forwarded-For is read from the right, skipping addresses of our own trusted proxies; the first other one is
    the client. Without trusted proxies the header is ignored, since any client can write it.
    """
    trusted = set(get_state().settings.auth.trusted_proxies)
    address = request.remote_addr or ""
    if address in trusted:
        hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
        for hop in reversed(hops):
            address = hop
            if hop not in trusted:
                break
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address[:64]


def _set_cookie(response: Response | BaseResponse, token: str) -> None:
    settings = get_state().settings
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.auth.session_days * 86400,
        path="/",
        secure=settings.server.secure_cookies,
        httponly=True,
        samesite="Lax",
    )


def _clear_cookie_after() -> None:
    secure = get_state().settings.server.secure_cookies

    @after_this_request
    async def clear(response: Response | BaseResponse) -> Response | BaseResponse:
        response.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="Lax")
        return response


def _send_cookie_after(token: str) -> None:
    @after_this_request
    async def send(response: Response | BaseResponse) -> Response | BaseResponse:
        _set_cookie(response, token)
        return response


async def sign_in(user: CurrentUser) -> None:
    """Open a server-side session for this user and hand its token to the browser in the session cookie."""
    state = get_state()
    token = await sessions.start(
        state.db,
        state.settings,
        user.id,
        user_agent=request.headers.get("User-Agent", ""),
        ip=client_address(),
        replaces=request.cookies.get(COOKIE),
    )
    g.user = user
    g.session_id = sessions.session_id(token)
    _send_cookie_after(token)


def current_user() -> CurrentUser:
    user: CurrentUser | None = g.get("user")
    if user is None:
        raise Unauthorized()
    return user


def current_session_id() -> str | None:
    session_id: str | None = g.get("session_id")
    return session_id


async def load_user() -> CurrentUser | None:
    """The user the request's session cookie belongs to (one indexed lookup, joined to the account), or None."""
    if "user" in g:
        cached: CurrentUser | None = g.user
        return cached
    token = request.cookies.get(COOKIE, "")
    state = get_state()
    resolved = await sessions.resolve(state.db, state.settings, token) if token else None
    g.user = resolved.user if resolved is not None else None
    g.session_id = resolved.session_id if resolved is not None else None
    if resolved is not None and resolved.refreshed:
        # The session's expiry slid forward; the cookie's follows so the browser keeps it as long.
        _send_cookie_after(token)
    return g.user


def login_required(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Refuse with 401 unless the request's session is live and its account enabled."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if request.method != "GET":
            return await _signed_in(func, *args, **kwargs)
        # A GET only reads: the session lookup and the route's queries share one transaction.
        async with get_state().db.shared_reads():
            return await _signed_in(func, *args, **kwargs)

    return wrapper


def role_required(*roles: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Like login_required, and then 403 unless the account's role is one of `roles` (checked on every request,
    from the session's own row, so a role taken away takes effect at once)."""

    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(func)
        async def allowed(*args: P.args, **kwargs: P.kwargs) -> R:
            if current_user().role not in roles:
                raise Forbidden("forbidden", "This page is for " + " and ".join(f"{r}s" for r in roles) + ".")
            return await func(*args, **kwargs)

        return login_required(allowed)

    return decorate


TEACHERS = ("teacher", "admin")
ADMINS = ("admin",)


async def _signed_in(func: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
    if await load_user() is None:
        raise Unauthorized()
    return await func(*args, **kwargs)


@bp.errorhandler(TooManyAttempts)
async def _too_many(exc: TooManyAttempts) -> tuple[Response, int, dict[str, str]]:
    return jsonify(exc.body()), exc.status, {"Retry-After": str(exc.retry_after)}


@bp.post("/register")
@validate_request(RegisterIn)
async def register(data: RegisterIn) -> tuple[UserOut, int]:
    state = get_state()
    user = await accounts.register(state.db, data.email, data.password, data.name, settings=state.settings)
    await sign_in(user.signed_in())
    return user, 201


@bp.post("/login")
@validate_request(LoginIn)
async def login(data: LoginIn) -> dict[str, Any]:
    state = get_state()
    user = await accounts.password_sign_in(state.db, state.settings, data.email, data.password, client_address())
    await sign_in(user)
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "plan": user.plan,
        "role": user.role,
        "is_admin": user.is_admin,
    }


@bp.post("/logout")
async def logout() -> tuple[str, int]:
    """End this browser's session. A request without our cookie (a cross-site one) changes nothing."""
    token = request.cookies.get(COOKIE)
    if token:
        await sessions.end(get_state().db, token)
        _clear_cookie_after()
    return "", 204


@bp.post("/logout-all")
@login_required
async def logout_all() -> tuple[str, int]:
    """Sign out everywhere: every session of this account ends, this one included."""
    await sessions.end_all(get_state().db, current_user().id)
    _clear_cookie_after()
    return "", 204


@bp.post("/password")
@login_required
@validate_request(PasswordChangeIn)
@validate_response(PasswordChangeOut)
async def change_password(data: PasswordChangeIn) -> PasswordChangeOut:
    """Change my password: my other sessions end, this one goes on."""
    state = get_state()
    ended = await accounts.change_password(
        state.db,
        state.settings,
        current_user(),
        data.current_password,
        data.new_password,
        keep_session=current_session_id(),
        address=client_address(),
    )
    return PasswordChangeOut(other_sessions_ended=ended)


@bp.get("/sessions")
@login_required
@validate_response(SessionList)
async def list_sessions() -> SessionList:
    """Where I am signed in: each live session, newest use first, with this one marked."""
    state = get_state()
    return await sessions.list_for(state.db, current_user().id, current_session_id())
