"""The `tutor` command: serve, migrate the database, manage accounts, and check the set-up."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from server.settings import ConfigError, Settings, load_settings

log = logging.getLogger("tutor")


def _settings(args: argparse.Namespace) -> Settings:
    path = args.config or os.environ.get("TUTOR_CONFIG") or ("config.toml" if Path("config.toml").is_file() else None)
    return load_settings(path)


def _configure_logging(settings: Settings) -> None:
    from server.observability import configure_logging

    configure_logging(settings.server.log_level)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    import uvicorn

    from server.app import create_app
    from server.observability import init_sentry

    init_sentry()
    app = create_app(settings)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    # uvloop and httptools: about 40% less server CPU a request than hypercorn on asyncio, measured with bench/api.py.
    # Lifespan on: Quart's before_serving and after_serving (which ends live lessons) run at start and stop.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    # uvicorn shuts down cleanly on SIGTERM or SIGINT and then raises the signal again with the handler it
    # found; with these, that last step is a clean exit (status 0), as the shutdown was.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    log.info("serving on http://%s:%s", host, port)
    uvicorn.Server(config).run()
    return 0


async def _with_db(settings: Settings, work: Callable[[Any], Awaitable[int]]) -> int:
    from server.store.db import Database

    db = Database(settings.database_url)
    try:
        return await work(db)
    finally:
        await db.close()


def cmd_db_upgrade(_args: argparse.Namespace, settings: Settings) -> int:
    async def work(db: Any) -> int:
        await db.upgrade()
        current, head = await db.schema_status()
        print(f"database schema at revision {current} (newest {head})")
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_users_create(args: argparse.Namespace, settings: Settings) -> int:
    from server import accounts

    password = args.password or os.environ.get("TUTOR_NEW_PASSWORD")
    if not password:
        # getpass would read a piped stdin with a warning, or die with EOFError on an empty one.
        if not sys.stdin.isatty():
            print(
                "tutor: no terminal to ask for a password: pass --password or set TUTOR_NEW_PASSWORD", file=sys.stderr
            )
            return 2
        try:
            password = getpass.getpass("Password: ")
        except EOFError:
            print("tutor: no password given", file=sys.stderr)
            return 2
    # Refused before anything touches the database; register checks the same rule again.
    problem = accounts.password_problem(password, settings.auth.min_password_length)
    if problem is not None:
        print(f"tutor: password: {problem}", file=sys.stderr)
        return 2

    async def work(db: Any) -> int:
        await db.upgrade() if db.is_sqlite else None
        user = await accounts.register(
            db,
            args.email,
            password,
            args.name,
            plan=args.plan,
            role="admin" if args.admin else args.role,
            min_password_length=settings.auth.min_password_length,
        )
        print(
            f"created {user.email} (id {user.id}, plan {user.plan}{', ' + user.role if user.role != 'learner' else ''})"
        )
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_users_set_disabled(args: argparse.Namespace, settings: Settings) -> int:
    from server import accounts

    disable = args.users_command == "disable"

    async def work(db: Any) -> int:
        user, ended = await accounts.set_disabled(db, args.email, disable)
        if disable:
            print(f"{user.email} is disabled; {ended} session{'' if ended == 1 else 's'} ended")
        else:
            print(f"{user.email} can sign in again")
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_users_set_plan(args: argparse.Namespace, settings: Settings) -> int:
    from server import accounts

    async def work(db: Any) -> int:
        user = await accounts.set_plan(db, args.email, args.plan)
        print(f"{user.email} is now on the {user.plan} plan")
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_users_list(_args: argparse.Namespace, settings: Settings) -> int:
    from server import accounts

    async def work(db: Any) -> int:
        for user in await accounts.list_users(db):
            fields = [str(user.id), user.email, user.name, user.plan, "sso" if user.sso else "local"]
            print("\t".join([*fields, user.role] if user.role != "learner" else fields))
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_users_export(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from server.retention import export_learner

    async def work(db: Any) -> int:
        print(json.dumps(await export_learner(db, args.email), indent=2, ensure_ascii=False))
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_users_delete(args: argparse.Namespace, settings: Settings) -> int:
    from server.retention import delete_learner

    if not args.yes:
        print(
            "tutor: deleting removes the account, its companions, lessons and transcripts; add --yes", file=sys.stderr
        )
        return 2

    async def work(db: Any) -> int:
        await delete_learner(db, args.email)
        print(f"deleted {args.email} and all their data")
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_lessons_prune(args: argparse.Namespace, settings: Settings) -> int:
    from server.retention import prune_transcripts

    async def work(db: Any) -> int:
        count = await prune_transcripts(db, args.older_than_days)
        print(f"deleted {count} transcript entries of lessons older than {args.older_than_days} days")
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_doctor(_args: argparse.Namespace, settings: Settings) -> int:
    from server.doctor import run_checks

    checks = asyncio.run(run_checks(settings))
    width = max(len(name) for name, _, _ in checks)
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'}  {name.ljust(width)}  {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tutor", description="The self-hosted voice tutor.")
    parser.add_argument("--config", help="path to config.toml (default: $TUTOR_CONFIG, then ./config.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the API, the page and live lessons")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate the schema to the newest revision").set_defaults(func=cmd_db_upgrade)

    users = sub.add_parser("users", help="learner accounts").add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="create a local account")
    create.add_argument("email")
    create.add_argument("--name", required=True)
    create.add_argument("--password", help="default: $TUTOR_NEW_PASSWORD, else asked for")
    create.add_argument("--plan", choices=("free", "core", "pro"), default="free")
    create.add_argument("--role", choices=("learner", "teacher", "admin"), default="learner")
    create.add_argument("--admin", action="store_true", help="the same as --role admin")
    create.set_defaults(func=cmd_users_create)
    set_plan = users.add_parser("set-plan", help="move a learner to another plan")
    set_plan.add_argument("email")
    set_plan.add_argument("plan", choices=("free", "core", "pro"))
    set_plan.set_defaults(func=cmd_users_set_plan)
    users.add_parser("list", help="list accounts").set_defaults(func=cmd_users_list)
    disable = users.add_parser("disable", help="turn an account off: its sessions end and it cannot sign in")
    disable.add_argument("email")
    disable.set_defaults(func=cmd_users_set_disabled)
    enable = users.add_parser("enable", help="let a disabled account sign in again")
    enable.add_argument("email")
    enable.set_defaults(func=cmd_users_set_disabled)
    export = users.add_parser("export", help="print everything stored about a learner as JSON")
    export.add_argument("email")
    export.set_defaults(func=cmd_users_export)
    remove = users.add_parser("delete", help="delete a learner and all their data")
    remove.add_argument("email")
    remove.add_argument("--yes", action="store_true", help="confirm")
    remove.set_defaults(func=cmd_users_delete)

    lessons = sub.add_parser("lessons", help="lesson history").add_subparsers(dest="lessons_command", required=True)
    prune = lessons.add_parser("prune", help="delete transcripts of old lessons (data retention)")
    prune.add_argument("--older-than-days", type=int, required=True)
    prune.set_defaults(func=cmd_lessons_prune)

    sub.add_parser("doctor", help="check each configured part and whether it answers").set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"tutor: bad configuration: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    from server.errors import AppError

    try:
        code: int = args.func(args, settings)
    except AppError as exc:
        print(f"tutor: {exc.message}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
