"""The `tutor` command as an operator uses it: accounts, plans, migrations, doctor, bad configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tutor(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TUTOR_")}
    environ.update({"TUTOR_SERVER__DATA_DIR": str(tmp_path / "data"), "TUTOR_SERVER__LOG_LEVEL": "WARNING", **env})
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=tmp_path,
        env=environ,
        # As under CI or cron: no terminal to type a password into.
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_users_create_set_plan_and_list(tmp_path):
    created = tutor(
        tmp_path,
        "users",
        "create",
        "teacher@school.test",
        "--name",
        "Ms T",
        "--admin",
        TUTOR_NEW_PASSWORD="long enough pw",
    )
    assert created.returncode == 0, created.stderr
    assert "teacher@school.test" in created.stdout
    assert tutor(tmp_path, "users", "set-plan", "teacher@school.test", "pro").returncode == 0
    listed = tutor(tmp_path, "users", "list")
    assert "teacher@school.test\tMs T\tpro\tlocal\tadmin" in listed.stdout


def test_users_create_a_teacher(tmp_path):
    created = tutor(
        tmp_path,
        "users",
        "create",
        "t@school.test",
        "--name",
        "Mr T",
        "--role",
        "teacher",
        TUTOR_NEW_PASSWORD="long enough pw",
    )
    assert created.returncode == 0, created.stderr
    assert "teacher" in created.stdout
    listed = tutor(tmp_path, "users", "list")
    assert "t@school.test\tMr T\tfree\tlocal\tteacher" in listed.stdout


def test_users_create_without_a_terminal_or_password_says_how(tmp_path):
    result = tutor(tmp_path, "users", "create", "kid@school.test", "--name", "Kid")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tutor: no terminal to ask for a password: pass --password or set TUTOR_NEW_PASSWORD"
    ]


def test_users_create_refuses_a_common_password(tmp_path):
    result = tutor(tmp_path, "users", "create", "kid@school.test", "--name", "Kid", "--password", "password123")
    assert result.returncode == 2
    assert "common" in result.stderr and "Traceback" not in result.stderr


def test_users_disable_and_enable(tmp_path):
    import asyncio

    from server import accounts
    from server.errors import Forbidden
    from server.store.db import Database
    from tests.conftest import make_settings

    created = tutor(
        tmp_path, "users", "create", "kid@school.test", "--name", "Kid", TUTOR_NEW_PASSWORD="long enough pw"
    )
    assert created.returncode == 0, created.stderr
    disabled = tutor(tmp_path, "users", "disable", "kid@school.test")
    assert disabled.returncode == 0, disabled.stderr
    assert "kid@school.test is disabled" in disabled.stdout

    async def sign_in() -> str:
        db = Database(make_settings(tmp_path).database_url)
        try:
            return (await accounts.authenticate(db, "kid@school.test", "long enough pw")).email
        except Forbidden as exc:
            return exc.code
        finally:
            await db.close()

    assert asyncio.run(sign_in()) == "account_disabled"
    assert tutor(tmp_path, "users", "enable", "kid@school.test").returncode == 0
    assert asyncio.run(sign_in()) == "kid@school.test"


def test_set_plan_for_unknown_user_fails_clearly(tmp_path):
    tutor(tmp_path, "db", "upgrade")
    result = tutor(tmp_path, "users", "set-plan", "ghost@school.test", "pro")
    assert result.returncode == 1
    assert "no account with email ghost@school.test" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_upgrade_reports_the_revision(tmp_path):
    result = tutor(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "revision" in result.stdout
    assert (tmp_path / "data" / "tutor.db").is_file()


def test_bad_config_is_one_clear_line(tmp_path):
    result = tutor(tmp_path, "users", "list", TUTOR_SERVER__PORT="eighty")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tutor: bad configuration: server.port: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_export_delete_and_prune_a_learners_data(tmp_path):
    import asyncio
    import json

    from server import accounts, lessons
    from server.companions import CompanionIn, create
    from server.store.db import Database
    from tests.conftest import make_settings

    settings = make_settings(tmp_path)

    async def seed() -> None:
        db = Database(settings.database_url)
        await db.upgrade()
        user = await accounts.register(db, "kid@school.test", "long enough pw", "Kid")
        current = accounts.CurrentUser(user.id, user.email, user.name, user.plan, False)
        body = CompanionIn(
            name="T", subject="maths", topic="Sums", voice="en_US-joe-medium", style="formal", duration=5
        )
        companion = await create(db, settings, current, body)
        lesson = await lessons.start(db, settings, current, companion.id)
        await lessons.append_transcript(db, lesson.id, "user", "What is two plus two?")
        await db.close()

    asyncio.run(seed())
    exported = tutor(tmp_path, "users", "export", "kid@school.test")
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert data["account"]["email"] == "kid@school.test"
    assert data["lessons"][0]["transcript"][0]["text"] == "What is two plus two?"
    assert data["companions"][0]["topic"] == "Sums"

    pruned = tutor(tmp_path, "lessons", "prune", "--older-than-days", "0")
    assert "deleted 1 transcript entries" in pruned.stdout
    assert json.loads(tutor(tmp_path, "users", "export", "kid@school.test").stdout)["lessons"][0]["transcript"] == []

    refused = tutor(tmp_path, "users", "delete", "kid@school.test")
    assert refused.returncode == 2
    assert tutor(tmp_path, "users", "delete", "kid@school.test", "--yes").returncode == 0
    gone = tutor(tmp_path, "users", "export", "kid@school.test")
    assert gone.returncode == 1 and "no account" in gone.stderr
