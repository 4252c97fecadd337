"""Plans and their limits: how many companions a learner may build and how many lessons they may start."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from server.settings import PlanLimits, Settings

PLANS: tuple[Literal["free", "core", "pro"], ...] = ("free", "core", "pro")


class PlanOut(BaseModel):
    id: str
    companions: int | None
    lessons: int | None


def _as_limit(value: int | str) -> int | None:
    """None means unlimited."""
    return None if value == "unlimited" else int(value)


def limits_for(settings: Settings, plan: str) -> tuple[int | None, int | None]:
    """(companion limit, lesson limit) for a plan; None is unlimited."""
    limits: PlanLimits = getattr(settings.plans, plan)
    return _as_limit(limits.companions), _as_limit(limits.lessons)


def all_plans(settings: Settings) -> list[PlanOut]:
    out = []
    for plan in PLANS:
        companions, lessons = limits_for(settings, plan)
        out.append(PlanOut(id=plan, companions=companions, lessons=lessons))
    return out


def lesson_period_start(settings: Settings, now: datetime | None = None) -> datetime | None:
    """Lessons started on or after this moment count toward the limit; None counts every lesson ever."""
    if settings.plans.lesson_period == "all-time":
        return None
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
