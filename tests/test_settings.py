"""Settings: config.toml, environment overrides, secrets from the environment only, and clear failures."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from server.pipeline.settings import LESSONS_PER_CORE
from server.settings import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def _flatten(table: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in table.items():
        if isinstance(value, dict) and not name.endswith(("voices", "plan_map")):
            keys |= _flatten(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_sample_config_documents_every_key_and_equals_the_defaults():
    text = (REPO / "config.toml").read_text()
    documented = _flatten(tomllib.loads(text))
    secret_lines = {line.lstrip("# ").split(" ")[0] for line in text.splitlines() if "TUTOR_" in line}
    missing = {k for k in _keys(Settings) if k not in documented and k.rsplit(".", 1)[-1] not in text}
    assert missing == set(), f"config.toml does not document: {sorted(missing)} ({len(secret_lines)} env lines)"
    assert load_settings(REPO / "config.toml", {}) == Settings()


def test_environment_overrides_file(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[server]\nport = 9000\n[plans.free]\nlessons = 5\n")
    settings = load_settings(config, {"TUTOR_SERVER__PORT": "9100", "TUTOR_DATABASE__URL": "sqlite+aiosqlite:///x.db"})
    assert settings.server.port == 9100
    assert settings.plans.free.lessons == 5 and settings.plans.free.companions == 3
    assert settings.database_url == "sqlite+aiosqlite:///x.db"


def test_config_path_from_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[plans]\nlesson_period = "month"\n')
    assert load_settings(None, {"TUTOR_CONFIG": str(config)}).plans.lesson_period == "month"


def test_live_lesson_cap_follows_the_cores_unless_set():
    # "auto" (the default) sizes the cap to the machine; a number is taken as it is, and 0 means no cap.
    assert load_settings(None, {}).voice.lesson_limit(2) == 2 * LESSONS_PER_CORE
    assert load_settings(None, {}).voice.lesson_limit(8) == 8 * LESSONS_PER_CORE
    assert load_settings(None, {"TUTOR_VOICE__MAX_LIVE_LESSONS": "5"}).voice.lesson_limit(2) == 5
    assert load_settings(None, {"TUTOR_VOICE__MAX_LIVE_LESSONS": "0"}).voice.lesson_limit(2) == 0
    assert load_settings(None, {"TUTOR_VOICE__MAX_LIVE_LESSONS": "auto"}).voice.lesson_limit(3) == 3 * LESSONS_PER_CORE


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"TUTOR_SERVER__PORT": "eighty"}, "server.port"),
        ({"TUTOR_VOICE__MAX_LIVE_LESSONS": "lots"}, "voice.max_live_lessons"),
        ({"TUTOR_PLANS__FREE__COMPANIONS": "-1"}, "plans.free.companions"),
        ({"TUTOR_VOICE__BACKEND": "skype"}, "voice.backend"),
        ({"TUTOR_SERVER__NO_SUCH_KEY": "1"}, "server.no_such_key"),
    ],
)
def test_bad_value_names_the_key(env, key):
    with pytest.raises(ConfigError) as info:
        load_settings(None, env)
    assert str(info.value).startswith(key)


def test_secrets_only_from_the_environment(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[voice.llm]\napi_key = "sk-live-123"\n')
    with pytest.raises(ConfigError, match="TUTOR_VOICE__LLM__API_KEY"):
        load_settings(config, {})
    secret = load_settings(None, {"TUTOR_VOICE__LLM__API_KEY": "12345"}).voice.llm.api_key
    assert secret is not None and secret.get_secret_value() == "12345"
    assert "12345" not in repr(load_settings(None, {"TUTOR_VOICE__LLM__API_KEY": "12345"}))


def test_missing_or_broken_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", {})
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, {})
