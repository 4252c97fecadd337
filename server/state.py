"""The resources one app instance shares across requests: settings, database and the voice service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quart import Quart, current_app

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from server.pipeline.service import VoiceService
    from server.settings import Settings
    from server.store.db import Database

STATE_KEY = "tutor"


@dataclass
class AppState:
    settings: Settings
    db: Database
    metrics: CollectorRegistry
    voice: VoiceService | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def get_state(app: Quart | None = None) -> AppState:
    """The app's shared state; inside a request or app context `app` may be omitted."""
    target = app if app is not None else current_app
    state: AppState = target.extensions[STATE_KEY]
    return state
