"""One typed settings object, read from config.toml and overridden by TUTOR_<SECTION>__<KEY> variables."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from server.pipeline.settings import VoiceSettings

ENV_PREFIX = "TUTOR_"
# Keys that may only come from the environment: a value for them in config.toml is refused.
SECRET_KEYS = {
    ("server", "secret_key"),
    ("auth", "sso", "client_secret"),
    ("voice", "llm", "api_key"),
    ("voice", "stt", "api_key"),
    ("voice", "tts", "api_key"),
    ("vapi", "private_key"),
    ("vapi", "webhook_secret"),
    ("observability", "metrics_token"),
}


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Where the SQLite file, the generated session key and uploads live.
    data_dir: str = "data"
    # From the environment only; generated once into data_dir when unset.
    secret_key: SecretStr | None = None
    # The address learners use, for SSO redirects and Vapi webhooks; empty = taken from each request.
    public_url: str = ""
    # Secure cookies need HTTPS; keep false for plain-HTTP loopback use.
    secure_cookies: bool = False
    log_level: str = "INFO"
    # How often a process records that it is alive. Lessons held by a process silent for three beats are
    # ended with `server-restart` by another process (or this one after a restart).
    heartbeat_secs: float = Field(default=10, gt=0, le=3600)


class DatabaseSettings(_Section):
    # Empty = SQLite at <data_dir>/tutor.db.
    url: str = ""
    pool_size: int = Field(default=10, ge=1, le=200)
    echo: bool = False
    # SQLite is always migrated at start; with PostgreSQL and several processes run `tutor db upgrade` instead.
    auto_migrate: bool = False


class SSOSettings(_Section):
    enabled: bool = False
    issuer: str = ""
    client_id: str = ""
    client_secret: SecretStr | None = None
    scopes: str = "openid email profile"
    button_label: str = "Sign in with your school"
    # A claim in the ID token (e.g. "groups") whose values map to plans through plan_map.
    plan_claim: str = ""
    plan_map: dict[str, Literal["free", "core", "pro"]] = Field(default_factory=dict)


class ThrottleSettings(_Section):
    # Failed sign-ins counted per account (normalized email) and per client address within a window; reaching
    # the count locks that key for lock_seconds, doubling at each further lock up to max_lock_seconds.
    account_failures: int = Field(default=5, ge=1, le=1000)
    # Higher than per account: a whole school behind one NAT address shares this count.
    address_failures: int = Field(default=50, ge=1, le=100000)
    window_seconds: int = Field(default=900, ge=1, le=86400)
    lock_seconds: int = Field(default=30, ge=1, le=86400)
    max_lock_seconds: int = Field(default=900, ge=1, le=86400)


class AuthSettings(_Section):
    allow_registration: bool = True
    session_days: int = Field(default=14, ge=1, le=365)
    min_password_length: int = Field(default=8, ge=6, le=128)
    # Addresses of reverse proxies whose X-Forwarded-For is believed when counting failed sign-ins per address;
    # empty: the connection's own address counts (behind a proxy, that is the proxy's for every learner).
    trusted_proxies: list[str] = Field(default_factory=list)
    throttle: ThrottleSettings = Field(default_factory=ThrottleSettings)
    sso: SSOSettings = Field(default_factory=SSOSettings)


Limit = int | Literal["unlimited"]


class PlanLimits(_Section):
    companions: Limit
    lessons: Limit

    @field_validator("companions", "lessons")
    @classmethod
    def _non_negative(cls, value: Limit) -> Limit:
        if isinstance(value, int) and value < 0:
            raise ValueError('must be a whole number >= 0 or "unlimited"')
        return value


class PlansSettings(_Section):
    # "all-time" counts every lesson ever started (as the original app did); "month" counts the calendar month (UTC).
    lesson_period: Literal["all-time", "month"] = "all-time"
    default_plan: Literal["free", "core", "pro"] = "free"
    free: PlanLimits = Field(default_factory=lambda: PlanLimits(companions=3, lessons=10))
    core: PlanLimits = Field(default_factory=lambda: PlanLimits(companions=10, lessons="unlimited"))
    pro: PlanLimits = Field(default_factory=lambda: PlanLimits(companions="unlimited", lessons="unlimited"))


class VapiSettings(_Section):
    public_key: str = ""
    private_key: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    # The id of a Bearer-token credential created in Vapi's dashboard holding webhook_secret; the assistant names
    # it so Vapi authenticates its webhooks to us. Empty: rely on an organisation-wide server secret at Vapi.
    server_credential_id: str = ""
    # Where the page loads the @vapi-ai/web SDK from; empty = the copy installed from npm under web/vendor/.
    sdk_url: str = ""
    transcriber_provider: str = "deepgram"
    transcriber_model: str = "nova-2"
    model_provider: str = "openai"
    model: str = "gpt-4o-mini"
    voice_provider: str = "11labs"
    voices: dict[str, str] = Field(
        default_factory=lambda: {
            "male.formal": "c6SfcYrb2t09NHXiT80T",
            "male.casual": "2BJW5coyhAzSr8STdHbE",
            "female.formal": "sarah",
            "female.casual": "ZIlrSGI4jZqobxRKprJz",
        }
    )


class ObservabilitySettings(_Section):
    # Sentry is switched on by the SENTRY_DSN environment variable.
    metrics: bool = True
    # From the environment only: a Prometheus scraper sends "Authorization: Bearer <token>".
    metrics_token: SecretStr | None = None


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    plans: PlansSettings = Field(default_factory=PlansSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    vapi: VapiSettings = Field(default_factory=VapiSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{Path(self.server.data_dir).resolve() / 'tutor.db'}"


def _parse_env_value(raw: str) -> Any:
    """Environment values are strings; JSON-looking ones (numbers, booleans, lists, tables) are decoded."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `update` onto `base`, so a partial table keeps the defaults of the keys it leaves out."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _find_secrets_in_file(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[str]:
    found = []
    for key, value in data.items():
        path = (*prefix, key)
        if path in SECRET_KEYS and value not in (None, ""):
            found.append(".".join(path))
        elif isinstance(value, Mapping):
            found.extend(_find_secrets_in_file(value, path))
    return found


def load_settings(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from a TOML file (optional) and the environment; raise ConfigError naming a bad key."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is None:
        path = environ.get("TUTOR_CONFIG") or None
    if path is not None:
        config_path = Path(path)
        if not config_path.is_file():
            raise ConfigError(f"config file not found: {config_path}")
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from exc
        secrets = _find_secrets_in_file(data)
        if secrets:
            raise ConfigError(
                f"{secrets[0]}: secrets are read only from the environment "
                f"(set {ENV_PREFIX}{secrets[0].upper().replace('.', '__')})"
            )
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "TUTOR_CONFIG" or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        is_secret = tuple(parts) in SECRET_KEYS
        _set_path(data, parts, raw if is_secret else _parse_env_value(raw))
    try:
        return Settings.model_validate(_merge(Settings().model_dump(), data))
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{key}: {err['msg']}") from exc
