"""quart-schema's query-string and response decorators for the hot read routes, without their per-request costs.

Both record their model where quart-schema's own do, so the OpenAPI document is the same. quart-schema builds a
new pydantic `TypeAdapter` for every query string it validates, and answers a model by dumping it to Python
objects that Flask's encoder then walks again, calling back into Python for every date; here the model
validates itself, and the answer is encoded once, by pydantic's JSON encoder (in Rust).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from quart import Response, request
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_RESPONSE_ATTRIBUTE,
    QuerystringValidationError,
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def validate_querystring(model: type[BaseModel]) -> Callable[[F], F]:
    """Pass the query string, validated by `model`, as `query_args`; a bad one is a 400 as with quart-schema."""

    def decorator(func: F) -> F:
        setattr(func, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, model)

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            values: dict[str, Any] = {}
            for key, found in request.args.lists():
                # The same reading as quart-schema's: `k[]` and a repeated key give a list, else the one value.
                if key.endswith("[]"):
                    values[key.removesuffix("[]")] = found
                else:
                    values[key] = found if len(found) > 1 else found[0]
            try:
                query_args = model.model_validate(values)
            except (ValidationError, TypeError, ValueError) as error:
                raise QuerystringValidationError(error) from None
            return await func(*args, query_args=query_args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


Answer = BaseModel | dict[str, Any]


def json_response(
    model: type[BaseModel],
) -> Callable[[Callable[..., Awaitable[Answer]]], Callable[..., Awaitable[Response]]]:
    """Answer 200 with what the route returns as JSON, documented as `model` like quart-schema's `validate_response`.

    The route returns a `model` instance, or the domain's plain dict of that shape (`companions.view`): built
    from our own rows, it is encoded as it is, not validated again (tests/api/test_read_path.py holds each read
    route's answer to its model).
    """

    def decorator(func: Callable[..., Awaitable[Answer]]) -> Callable[..., Awaitable[Response]]:
        schemas = getattr(func, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {})
        schemas[200] = (model, None)
        setattr(func, QUART_SCHEMA_RESPONSE_ATTRIBUTE, schemas)

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Response:
            value = await func(*args, **kwargs)
            if isinstance(value, BaseModel) and not isinstance(value, model):
                raise TypeError(f"{func.__name__} answered {type(value).__name__}, not {model.__name__}")
            # The same text for a model and for its dict: dates in ISO 8601 ("...Z" in UTC), no ASCII escaping.
            body = value.model_dump_json() if isinstance(value, BaseModel) else to_json(value)
            return Response(body, status=200, mimetype="application/json")

        return wrapper

    return decorator
