"""Time helpers: UTC in storage, the installation's zone (DEFAULT_TIMEZONE) for display and schedules."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context

from app.db import utcnow

__all__ = ["utcnow", "local_to_utc", "to_local", "local_zone", "local_today", "PARIS"]

#: The zone of an installation that sets nothing (and of code running outside the app).
PARIS = ZoneInfo("Europe/Paris")


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    """A ZoneInfo by name, built once."""
    return ZoneInfo(name)


def local_zone() -> ZoneInfo:
    """The installation's time zone: every site of one installation lives in it."""
    if has_app_context():
        return _zone(current_app.config.get("DEFAULT_TIMEZONE") or "Europe/Paris")
    return PARIS


def local_today(now: datetime | None = None) -> date:
    """Today's date where the sites are."""
    return (now or utcnow()).astimezone(local_zone()).date()


def local_to_utc(day: date, at: time, tz: str | ZoneInfo | None = None) -> datetime:
    """A wall-clock time on a day in a zone, as an aware UTC datetime (DST-safe)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz or local_zone()
    return datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc)


def to_local(moment: datetime, tz: str | ZoneInfo | None = None) -> datetime:
    """An aware datetime shown in the installation's zone."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz or local_zone()
    return moment.astimezone(zone)
