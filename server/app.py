"""The app factory: builds the Quart app from settings, wires routes, errors, metrics and shared resources."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError
from quart import Quart, Request, Response, g, jsonify, request
from quart_schema import QuartSchema
from quart_schema.validation import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import IntegerConverter, Map

from server import instances, materials, recaps, retention, safety, teaching
from server.api import guard
from server.errors import AppError, BadRequest
from server.lesson_recorder import after_lesson
from server.settings import Settings
from server.state import STATE_KEY, AppState
from server.store.db import Database

if TYPE_CHECKING:
    from server.pipeline.language_model import LanguageModel

log = logging.getLogger(__name__)
# A step of the shutdown that takes longer is logged (a stuck part shows in the log, not as a silent hang).
SLOW_SHUTDOWN_STEP_SECS = 3.0
# A step still running after this long is given up and the shutdown goes on: the process exits, and what that step
# left undone is picked up at the next start (a lesson left open is ended by the sweep, a recap stays pending).
# Live lessons whose parts answer end in well under a second; each part that does not is waited on for 5 to 10 s.
SHUTDOWN_STEP_LIMIT_SECS = 20.0


def _secret_key(settings: Settings) -> str:
    """The session-signing key: from the environment, else generated once and kept in the data directory."""
    if settings.server.secret_key is not None:
        return settings.server.secret_key.get_secret_value()
    path = Path(settings.server.data_dir) / "secret_key"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


# Vapi's end-of-call report carries a whole lesson's conversation (several times over), so its route takes
# bodies larger than the 1 MiB every other route is held to.
LARGE_BODY_PATHS = {"/api/vapi/webhook": 16 * 1024 * 1024}


class TutorRequest(Request):
    """A request whose body limit depends on its route and whose JSON body every route gets parsed safely."""

    # (path pattern, limit) of routes that take uploads, from the settings: create_app sets them per app.
    upload_limits: tuple[tuple[re.Pattern[str], int], ...] = ()

    def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
        if path in LARGE_BODY_PATHS:
            kwargs["max_content_length"] = LARGE_BODY_PATHS[path]
        elif method == "POST":
            for pattern, limit in self.upload_limits:
                if pattern.fullmatch(path):
                    kwargs["max_content_length"] = limit
                    break
        super().__init__(method, scheme, path, *args, **kwargs)

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        """Quart's get_json (quart-schema's validate_request calls it), with the body decoded by guard.parse_json.

        Bad UTF-8, runaway nesting, NUL characters and lone surrogates are a 400 here, once for every route,
        rather than a 500 from the decoder, the recursion limit or the database driver.
        """
        if cache and self._cached_json[silent] is not Ellipsis:
            return self._cached_json[silent]
        if not (force or self.is_json):
            return None
        raw = await self.get_data(cache=cache, as_text=False, parse_form_data=False)
        try:
            result = guard.parse_json(raw, allow_nul=self.path in guard.NUL_CLEANED_PATHS)
        except BadRequest:
            if not silent:
                raise
            result = None
        if cache:
            self._cached_json[silent] = result
        return result


class IdConverter(IntegerConverter):
    """`<int:...>` bounded to what a BIGINT column holds, so an absurd id is a 404 rather than a driver error."""

    def __init__(
        self,
        url_map: Map,
        fixed_digits: int = 0,
        min: int | None = 1,
        max: int | None = 2**63 - 1,
        signed: bool = False,
    ) -> None:
        super().__init__(url_map, fixed_digits, min, max, signed)


def _validation_fields(exc: RequestSchemaValidationError) -> tuple[str, dict[str, str]]:
    cause = exc.validation_error
    if isinstance(cause, ValidationError):
        fields: dict[str, str] = {}
        for err in cause.errors():
            key = ".".join(str(p) for p in err["loc"]) or "body"
            if err["type"] == "extra_forbidden":
                fields[key] = "is not a known field"
            elif err["type"] == "model_type" or err["type"] == "model_attributes_type":
                fields["body"] = "must be a JSON object"
            else:
                fields[key] = err["msg"]
        first = next(iter(fields.items()))
        return f"{first[0]}: {first[1]}", fields
    return "The request body must be a JSON object.", {"body": "must be a JSON object"}


def _register_errors(app: Quart) -> None:
    @app.errorhandler(AppError)
    async def _app_error(exc: AppError) -> tuple[Response, int]:
        return jsonify(exc.body()), exc.status

    @app.errorhandler(RequestSchemaValidationError)
    async def _invalid(exc: RequestSchemaValidationError) -> tuple[Response, int]:
        message, fields = _validation_fields(exc)
        return jsonify({"error": {"code": "validation_error", "message": message, "fields": fields}}), 400

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name or "error"
        return jsonify({"error": {"code": code, "message": message}}), status

    # A 500 handler rather than one for Exception: Quart signals got_request_exception (which Sentry's
    # integration listens to) before it calls this, so failures are reported, logged and shaped alike.
    @app.errorhandler(InternalServerError)
    async def _unexpected(exc: InternalServerError) -> tuple[Response, int]:
        original = exc.original_exception or exc
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
        return jsonify({"error": {"code": "internal_error", "message": "Something went wrong on our side."}}), 500


def _register_metrics(app: Quart, registry: CollectorRegistry) -> None:
    requests_total = Counter(
        "tutor_http_requests_total",
        "HTTP requests answered",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "tutor_http_request_seconds",
        "HTTP request latency",
        ["method", "route"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )

    @app.before_request
    async def _start_timer() -> None:
        g.started = time.perf_counter()

    # Each (method, route, status)'s two series, looked up once: labels() takes the metric's lock and builds its
    # key on every call, a cost every request paid. Routes, methods and statuses are few, so this stays small.
    series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    @app.after_request
    async def _observe(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            key = (request.method, rule, response.status_code)
            found = series.get(key)
            if found is None:
                found = series[key] = (
                    latency.labels(request.method, rule),
                    requests_total.labels(request.method, rule, str(response.status_code)),
                )
            found[0].observe(time.perf_counter() - started)
            found[1].inc()
        return response


def create_app(settings: Settings, **overrides: Any) -> Quart:
    """Build an app for these settings; nothing connects or loads until the app starts serving."""
    app = Quart(__name__, static_folder=None)
    from server.api import materials as material_routes

    class AppRequest(TutorRequest):
        # A material's upload may be as large as the settings allow; every other route keeps 1 MiB.
        upload_limits = ((material_routes.UPLOAD_PATH, material_routes.upload_limit(settings)),)

    app.request_class = AppRequest
    app.url_map.converters["int"] = IdConverter
    app.config.update(
        SECRET_KEY=_secret_key(settings),
        # Quart's signed-cookie session only carries single sign-on's state and nonce through the provider's
        # redirect; who is signed in is our own `tutor_session` cookie (server/api/auth.py).
        SESSION_COOKIE_NAME="tutor_sso",
        SESSION_COOKIE_PATH="/api/auth/sso",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.server.secure_cookies,
        MAX_CONTENT_LENGTH=1024 * 1024,
        QUART_SCHEMA_CONVERT_CASING=False,
        **overrides,
    )
    QuartSchema(
        app,
        info={"title": "Voice Tutor API", "version": "0.1.0"},
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
    )
    db = Database(settings.database_url, pool_size=settings.database.pool_size, echo=settings.database.echo)
    registry = CollectorRegistry()
    state = AppState(settings=settings, db=db, metrics=registry)
    app.extensions[STATE_KEY] = state
    # Hosted (Vapi) lessons have no voice service, but their recaps and quiz judgements are still written here, by
    # the model voice.llm names (loaded the first time one is asked for).
    writer: LanguageModel | None = None
    if settings.voice.backend != "local":
        from server.pipeline.compute import usable_cpus
        from server.pipeline.language_model import LanguageModel as Writer

        writer = Writer(settings.voice, usable_cpus())

    def language_model() -> LanguageModel | None:
        return state.voice.language_model if state.voice is not None else writer

    # Screens every utterance of the local pipeline's lessons; its classifier is the voice service's model.
    screening = state.extras[safety.EXTRAS_KEY] = safety.Safety(
        settings, db, language_model=lambda: state.voice.language_model if state.voice is not None else None
    )
    # After each quiz lesson, judges which review questions the learner answered right.
    judge = state.extras[teaching.EXTRAS_KEY] = teaching.ReviewJudge(settings, db, language_model=language_model)
    # The teachers' materials: uploads, and the passages each lesson's turns are given.
    library = state.extras[materials.EXTRAS_KEY] = materials.Materials(settings, db)
    # Writes each lesson's recap once it ends, and keeps the learner's facts; same model.
    recapper = state.extras[recaps.EXTRAS_KEY] = recaps.Recaps(settings, db, language_model=language_model)
    if settings.voice.backend == "local":
        from server.lesson_recorder import stored_lessons
        from server.pipeline.service import VoiceService

        recorders = stored_lessons(db, screening, teaching=judge, materials=library, recaps=recapper)
        state.voice = VoiceService(settings, recorders)

    _register_errors(app)
    if settings.observability.metrics:
        _register_metrics(app, registry)
        from prometheus_client import ProcessCollector

        from server.observability import RuntimeCollector

        # Resident memory, open files, threads, tasks and live lessons: what a long day of lessons must not grow.
        ProcessCollector(registry=registry)
        registry.register(RuntimeCollector(lambda: state.voice.live_lessons if state.voice is not None else 0))

    # After the metrics hooks, so refused requests are counted too; before every route and blueprint hook.
    guard.install(app, settings)

    from server.api import admin, auth, classes, companions, lessons, me, sso, system, vapi, voice, voices, web
    from server.api import safety as safety_routes

    blueprints = [system.bp, auth.bp, sso.bp, companions.bp, lessons.bp, me.bp, voice.bp, voices.bp, vapi.bp]
    # The school console: teachers' classes, administration, safety flags and alerts.
    blueprints += [classes.bp, admin.bp, safety_routes.bp]
    blueprints.append(material_routes.bp)
    from server.api import recaps as recap_routes

    blueprints.append(recap_routes.bp)
    # Last: the page's catch-all.
    blueprints.append(web.bp)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)

    async def lessons_swept(lesson_ids: list[int]) -> None:
        """Lessons a dead process left open were ended: each gets its recap and quiz judgement like any other."""
        for lesson_id in lesson_ids:
            await after_lesson(lesson_id, teaching=judge, recaps=recapper)

    @app.before_serving
    async def _startup() -> None:
        if db.is_sqlite or settings.database.auto_migrate:
            await db.upgrade()
        # Registers this process and ends lessons that a dead one left open.
        keeper = state.extras[instances.EXTRAS_KEY] = instances.InstanceKeeper(
            db, settings.server.heartbeat_secs, on_swept=lessons_swept
        )
        await keeper.start()
        # Deletes transcripts older than the school's retention days, every retention.interval_secs.
        pruner = state.extras[retention.EXTRAS_KEY] = retention.RetentionKeeper(db, settings)
        pruner.start()
        await recapper.start()
        if state.voice is not None and getattr(settings.voice, "preload", True):
            await state.voice.start()

    @app.after_serving
    async def _shutdown() -> None:
        async def step(what: str, work: Awaitable[object]) -> None:
            started = time.perf_counter()
            try:
                await asyncio.wait_for(work, timeout=SHUTDOWN_STEP_LIMIT_SECS)
            except TimeoutError:
                log.error("shutdown: %s did not finish in %g s; going on without it", what, SHUTDOWN_STEP_LIMIT_SECS)
                return
            took = time.perf_counter() - started
            if took > SLOW_SHUTDOWN_STEP_SECS:
                log.warning("shutdown: %s took %.1f s", what, took)

        pruner = state.extras.pop(retention.EXTRAS_KEY, None)
        if pruner is not None:
            await step("the retention keeper", pruner.stop())
        if state.voice is not None:
            await step("ending the live lessons", state.voice.close())
        # After the lessons ended: stores their last screening results, then stops sending alerts.
        await step("the safety screening", screening.close())
        await step("the materials", library.close())
        await step("the quiz judge", judge.close())
        # Recaps not written yet stay pending, and are written when the server starts again.
        await step("the recap writer", recapper.close())
        if writer is not None:
            await step("the hosted lessons' language model", writer.close())
        # After the voice service ended its live lessons: ends the ones it never ran (no offer came).
        keeper = state.extras.pop(instances.EXTRAS_KEY, None)
        if keeper is not None:
            await step("this instance's lessons", keeper.stop())
        await step("the database", db.close())

    return app
