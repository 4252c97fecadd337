"""Sign-up, sign-in and sign-out with local accounts, and the guard every private route uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, g, request, session
from quart_schema import validate_request

from server import accounts
from server.accounts import CurrentUser, UserOut
from server.errors import BadRequest, Forbidden, Unauthorized
from server.state import get_state

bp = Blueprint("auth", __name__, url_prefix="/api/auth")

P = ParamSpec("P")
R = TypeVar("R")
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    email: str = Field(pattern=EMAIL_PATTERN, max_length=320)
    password: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=100)


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=256)


def sign_in(user: CurrentUser) -> None:
    """Bind the browser session to this user; the session cookie is the only source of identity."""
    session.clear()
    session.permanent = True
    session["uid"] = user.id


def current_user() -> CurrentUser:
    user: CurrentUser | None = g.get("user")
    if user is None:
        raise Unauthorized()
    return user


async def load_user() -> CurrentUser | None:
    if "user" in g:
        cached: CurrentUser | None = g.user
        return cached
    uid = session.get("uid")
    user = await accounts.load_current(get_state().db, int(uid)) if isinstance(uid, int) else None
    g.user = user
    return user


def login_required(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Refuse with 401 unless the session belongs to an existing account."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if request.method != "GET":
            return await _signed_in(func, *args, **kwargs)
        # A GET only reads: the account lookup and the route's queries share one transaction.
        async with get_state().db.shared_reads():
            return await _signed_in(func, *args, **kwargs)

    return wrapper


async def _signed_in(func: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
    if await load_user() is None:
        session.clear()
        raise Unauthorized()
    return await func(*args, **kwargs)


@bp.post("/register")
@validate_request(RegisterIn)
async def register(data: RegisterIn) -> tuple[UserOut, int]:
    settings = get_state().settings
    if not settings.auth.allow_registration:
        raise Forbidden("registration_closed", "This school creates accounts for you; sign in with your school.")
    if len(data.password) < settings.auth.min_password_length:
        raise_field("password", f"must be at least {settings.auth.min_password_length} characters")
    user = await accounts.register(
        get_state().db, data.email, data.password, data.name, plan=settings.plans.default_plan
    )
    sign_in(CurrentUser(user.id, user.email, user.name, user.plan, user.is_admin))
    return user, 201


def raise_field(field: str, message: str) -> None:
    raise BadRequest("validation_error", f"{field}: {message}", fields={field: message})


@bp.post("/login")
@validate_request(LoginIn)
async def login(data: LoginIn) -> dict[str, Any]:
    user = await accounts.authenticate(get_state().db, data.email, data.password)
    sign_in(user)
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "plan": user.plan,
        "is_admin": user.is_admin,
    }


@bp.post("/logout")
async def logout() -> tuple[str, int]:
    session.clear()
    return "", 204
