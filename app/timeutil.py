"""Time helpers: UTC in storage, the site's zone for display and schedules."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

from app.db import utcnow

__all__ = ["utcnow", "local_to_utc", "to_local", "PARIS"]

PARIS = ZoneInfo("Europe/Paris")


def local_to_utc(day: date, at: time, tz: str | ZoneInfo = PARIS) -> datetime:
    """A wall-clock time on a day in a zone, as an aware UTC datetime (DST-safe)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc)


def to_local(moment: datetime, tz: str | ZoneInfo = PARIS) -> datetime:
    """An aware datetime shown in the site's zone."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return moment.astimezone(zone)
