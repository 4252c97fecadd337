"""Settings: config.toml, environment overrides, secrets from the environment only, and clear failures."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from server.settings import (
    BUNDLED_LLM_CORES_PER_LESSON,
    ConfigError,
    Settings,
    load_settings,
)

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


def test_environment_values_are_typed_like_the_file(tmp_path):
    env = {
        "TUTOR_VOICE__PACKET_MS": "20",
        "TUTOR_SERVER__SECURE_COOKIES": "true",
        "TUTOR_VOICE__STT__TIMEOUT_SECS": "2.5",
        "TUTOR_AUTH__TRUSTED_PROXIES": '["10.0.0.1", "10.0.0.2"]',
        "TUTOR_VOICE__ICE_SERVERS": '[{"urls": ["stun:stun.school.test:3478"]}]',
        "TUTOR_AUTH__SSO__PLAN_MAP__STAFF": "pro",
        # Text stays text, even when it looks like a number.
        "TUTOR_VAPI__PUBLIC_KEY": "12345",
    }
    settings = load_settings(None, env)
    assert settings.voice.packet_ms == 20 and settings.server.secure_cookies is True
    assert settings.voice.stt.timeout_secs == 2.5
    assert settings.auth.trusted_proxies == ["10.0.0.1", "10.0.0.2"]
    assert settings.voice.ice_servers[0].urls == ["stun:stun.school.test:3478"]
    assert settings.auth.sso.plan_map == {"staff": "pro"}
    assert settings.vapi.public_key == "12345"


def test_a_partial_table_keeps_the_other_defaults(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[voice.tts.voices."male.formal"]\nvoice = "en_GB-alan-medium"\n[plans.core]\ncompanions = 4\n')
    settings = load_settings(config, {"TUTOR_PLANS__CORE__LESSONS": "7"})
    voices = settings.voice.tts.voices
    assert voices["male.formal"].voice == "en_GB-alan-medium" and voices["male.formal"].length_scale == 1.05
    assert set(voices) == {"male.formal", "male.casual", "female.formal", "female.casual"}
    assert (settings.plans.core.companions, settings.plans.core.lessons) == (4, 7)
    assert settings.plans.free == Settings().plans.free


def test_settings_alone_are_the_defaults_whatever_the_process_environment(monkeypatch):
    # Only load_settings reads variables, so a test or tool that builds Settings() never picks up the shell's.
    monkeypatch.setenv("TUTOR_SERVER__PORT", "9123")
    assert Settings().server.port == 8000
    assert load_settings().server.port == 9123


def test_live_lesson_cap_follows_the_cores_unless_set():
    # "auto" (the default) sizes the cap to the machine; a number is taken as it is, and 0 means no cap.
    voice = load_settings(None, {}).voice
    # With the language model elsewhere, the speech stages alone decide; the bundled model in-process costs more,
    # and a model 40 times its size on the CPU leaves room for one lesson.
    assert voice.lesson_limit(2) == 8
    assert voice.lesson_limit(8) == 4 * voice.lesson_limit(2)
    assert voice.lesson_limit(2, BUNDLED_LLM_CORES_PER_LESSON) == 4
    assert voice.lesson_limit(2, 40 * BUNDLED_LLM_CORES_PER_LESSON) == 1
    assert load_settings(None, {"TUTOR_VOICE__MAX_LIVE_LESSONS": "5"}).voice.lesson_limit(2) == 5
    assert load_settings(None, {"TUTOR_VOICE__MAX_LIVE_LESSONS": "5"}).voice.lesson_limit(2, 9.0) == 5
    assert load_settings(None, {"TUTOR_VOICE__MAX_LIVE_LESSONS": "0"}).voice.lesson_limit(2) == 0


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"TUTOR_SERVER__PORT": "eighty"}, "server.port"),
        ({"TUTOR_VOICE__MAX_LIVE_LESSONS": "lots"}, "voice.max_live_lessons"),
        ({"TUTOR_PLANS__FREE__COMPANIONS": "-1"}, "plans.free.companions"),
        ({"TUTOR_VOICE__BACKEND": "skype"}, "voice.backend"),
        ({"TUTOR_SERVER__NO_SUCH_KEY": "1"}, "server.no_such_key"),
        ({"TUTOR_NO_SUCH_SECTION__KEY": "1"}, "no_such_section"),
        ({"TUTOR_VOICE__PACKET_MS": "30"}, "voice.packet_ms"),
        # A list or table in a variable is JSON; the key is named when it is not.
        ({"TUTOR_AUTH__TRUSTED_PROXIES": "10.0.0.1"}, "auth.trusted_proxies"),
        ({"TUTOR_VOICE__ICE_SERVERS": "[{urls"}, "voice.ice_servers"),
    ],
)
def test_bad_value_names_the_key(env, key):
    with pytest.raises(ConfigError) as info:
        load_settings(None, env)
    assert str(info.value).startswith(key)


@pytest.mark.parametrize(
    "key",
    [
        "server.secret_key",
        "auth.sso.client_secret",
        "voice.llm.api_key",
        "voice.stt.api_key",
        "voice.tts.api_key",
        "vapi.private_key",
        "vapi.webhook_secret",
        "observability.metrics_token",
    ],
)
def test_every_secret_is_refused_in_the_file(tmp_path, key):
    table, name = key.rsplit(".", 1)
    config = tmp_path / "config.toml"
    config.write_text(f'[{table}]\n{name} = "from-the-file"\n')
    env_name = "TUTOR_" + key.upper().replace(".", "__")
    with pytest.raises(ConfigError, match=env_name):
        load_settings(config, {})
    settings = load_settings(None, {env_name: "s3cret"})
    value = functools.reduce(getattr, key.split("."), settings)
    assert value.get_secret_value() == "s3cret" and "s3cret" not in repr(settings)


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
