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
