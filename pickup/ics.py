"""The household's pickup slot as an iCalendar (.ics) file for its phone's calendar."""
from __future__ import annotations

from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from icalendar import Calendar, Event

from app.db import utcnow
from app.extensions import db
from app.timeutil import local_zone
from orders.models import Cycle, Order
from pickup.models import Site, Slot


def slot_calendar(order_id: int, base_url: str = "") -> bytes:
    """One VEVENT for the order's slot, in the site's time zone, with the site's address."""
    order = db.session.get(Order, order_id)
    slot = db.session.get(Slot, order.slot_id)
    cycle = db.session.get(Cycle, order.cycle_id)
    site = db.session.get(Site, cycle.site_id)
    zone = ZoneInfo(site.timezone) if site.timezone else local_zone()

    calendar = Calendar()
    calendar.add("prodid", "-//Panier commun//retrait//FR")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    event = Event()
    # Stable per order: re-downloading after a slot change updates the same calendar entry.
    event.add("uid", f"panier-commun-order-{order.id}@{(base_url or 'panier').split('//')[-1]}")
    event.add("dtstamp", utcnow())
    event.add("dtstart", slot.starts_at.astimezone(zone))
    event.add("dtend", slot.ends_at.astimezone(zone))
    event.add("summary", _("Retrait du panier · %(site)s", site=site.name))
    location = ", ".join(part for part in (site.name, site.address) if part)
    event.add("location", location)
    lines = [_("Votre sac vous attend au %(site)s.", site=site.name)]
    if order.bag_number:
        lines.append(_("Numéro de sac : %(number)s", number=order.bag_number))
    if base_url:
        lines.append(base_url)
    event.add("description", "\n".join(lines))
    calendar.add_component(event)
    # Add the VTIMEZONE the event's local times refer to, so every calendar app reads them right.
    calendar.add_missing_timezones()
    return calendar.to_ical()
