"""`flask demo load`: a realistic café, loaded twice without duplicates."""
from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from app import demo
from app.extensions import db
from app.models import Household, User
from orders.models import Cycle, Schedule
from pickup.models import Site, Slot
from producers.models import Offer, Producer, Product
from tests.helpers import login


def _row_counts() -> dict[str, int]:
    """Rows per table."""
    with db.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in db.metadata.sorted_tables}


def test_demo_load_twice_adds_nothing_the_second_time(app, runner):
    first = runner.invoke(args=["demo", "load"])
    assert first.exit_code == 0, first.output
    counts = _row_counts()
    second = runner.invoke(args=["demo", "load"])
    assert second.exit_code == 0, second.output
    assert _row_counts() == counts
    assert "(0 nouvelles lignes)" in second.output


def test_demo_refuses_a_database_with_real_accounts_unless_told(app, runner):
    assert runner.invoke(args=["users", "create-coordinator", "--email", "presidente@cafe-du-bourg.fr",
                               "--name", "Anne", "--password", "une-phrase-longue"]).exit_code == 0
    refused = runner.invoke(args=["demo", "load"])
    assert refused.exit_code == 1
    assert "Cette base a déjà des comptes réels (par exemple presidente@cafe-du-bourg.fr)" in refused.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Household)) == 0
    forced = runner.invoke(args=["demo", "load", "--allow-real"])
    assert forced.exit_code == 0, forced.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Household)) == 30


def test_demo_looks_like_the_real_cafe(app, client, runner):
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    site = db.session.scalar(sa.select(Site).where(Site.name == "Café du Bourg"))
    assert site.timezone == "Europe/Paris"
    schedule = db.session.scalar(sa.select(Schedule).where(Schedule.site_id == site.id))
    assert (schedule.opens_weekday, str(schedule.opens_time)[:5]) == (4, "08:00")
    assert (schedule.closes_weekday, str(schedule.closes_time)[:5]) == (1, "23:59")
    assert (schedule.distribution_weekday, schedule.slot_minutes) == (3, 30)

    kinds = [k for (k,) in db.session.execute(sa.select(Producer.kind))]
    assert sorted(kinds).count("market_trader") == 3 and kinds.count("farmer") == 2 and kinds.count("bulk_supplier") == 1
    bulk = db.session.scalars(sa.select(Product).where(Product.case_size.is_not(None))).all()
    assert bulk and all(p.producer.kind == "bulk_supplier" for p in bulk)
    assert {p.unit for p in db.session.scalars(sa.select(Product))} == {"piece", "kg", "l", "bunch", "basket"}

    households = db.session.scalars(sa.select(Household)).all()
    assert len(households) == 30 and all(h.members for h in households)
    roles = [u.roles for u in db.session.scalars(sa.select(User))]
    assert sum("volunteer" in r for r in roles) >= 3
    assert sum("coordinator" in r for r in roles) == 1
    assert sum("producer" in r for r in roles) == 6

    [cycle] = db.session.scalars(sa.select(Cycle).where(Cycle.status == "open")).all()
    slots = db.session.scalars(sa.select(Slot).where(Slot.cycle_id == cycle.id).order_by(Slot.starts_at)).all()
    paris = ZoneInfo("Europe/Paris")
    assert [s.starts_at.astimezone(paris).strftime("%H:%M") for s in slots][:2] == ["16:30", "17:00"]
    assert slots[-1].ends_at.astimezone(paris).strftime("%H:%M") == "19:30"
    assert cycle.distribution_date.weekday() == 3
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Offer).where(Offer.cycle_id == cycle.id)) >= 25

    for entry in demo.logins():
        fresh = app.test_client()
        page = login(fresh, entry.email, demo.DEMO_PASSWORD)
        assert "Bonjour" in page.get_data(as_text=True), entry.email


def test_demo_has_a_distribution_to_prepare_with_its_documents(app, client, runner):
    """A volunteer trying the demo finds today's bags to prepare, their printed lists, and can end the day."""
    from app.models import Document
    from pickup.demo import THURSDAY_NOTE

    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    cycle = db.session.scalar(sa.select(Cycle).where(Cycle.note == THURSDAY_NOTE))
    assert cycle.status == "finalized"
    kinds = set(db.session.scalars(sa.select(Document.kind).where(Document.cycle_id == cycle.id)))
    assert {"purchase_order", "bag_slips", "grid", "distribution_sheet"} <= kinds

    login(client, "benevole@example.org", demo.DEMO_PASSWORD)
    page = client.get("/retrait/preparation").get_data(as_text=True)
    assert "Aucune distribution en cours" not in page
    assert "Famille" in page
    from app.timeutil import local_today

    assert cycle.distribution_date == local_today()
    assert "Terminer la distribution" in client.get("/retrait/accueil").get_data(as_text=True)


def test_demo_has_last_weeks_bags_still_to_settle_at_todays_desk(app, client, runner):
    """Last week's distribution is over: one bag left unpaid, one nobody came for, kept at the café."""
    from orders.payments import amount_due_cents
    from pickup.demo import KEPT_AT_CAFE, LAST_WEEK_NOTE
    from pickup.services import current_distribution, find_bags

    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    cycle = db.session.scalar(sa.select(Cycle).where(Cycle.note == LAST_WEEK_NOTE))
    assert cycle.status == "distributed"
    today = current_distribution()
    households = db.session.scalars(sa.select(Household).order_by(Household.id).limit(13)).all()
    unpaid, kept = (find_bags(today.id, households[i].name)[-1] for i in (0, 12))
    assert unpaid.earlier_day == kept.earlier_day == cycle.distribution_date
    assert unpaid.status == "collected" and amount_due_cents(unpaid.order.id) > 0
    assert kept.status == "no_show" and kept.pickup.no_show_outcome == KEPT_AT_CAFE

    login(client, "benevole@example.org", demo.DEMO_PASSWORD)
    page = client.get(f"/retrait/accueil/sac/{kept.order.id}").get_data(as_text=True)
    assert "Sac de la distribution du" in page and KEPT_AT_CAFE in page


def test_loading_again_keeps_what_households_changed_and_the_weeks_ahead_have_the_catalogue(app, runner):
    from orders.models import Order, OrderLine
    from orders.services import save_order

    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    cycles = db.session.scalars(sa.select(Cycle).where(Cycle.status.in_(("open", "draft")))
                                .order_by(Cycle.distribution_date)).all()
    assert cycles[0].status == "open" and len(cycles) >= 2
    offered = [db.session.scalar(sa.select(sa.func.count()).select_from(Offer).where(Offer.cycle_id == c.id))
               for c in cycles]
    assert offered[0] > 10 and all(n == offered[0] for n in offered[1:]), offered

    # Claire's household takes its rice out; the demo loaded again leaves it out.
    martin = db.session.scalar(sa.select(Household).where(Household.name == "Famille Martin"))
    rice = db.session.scalar(sa.select(Offer).join(Product, Product.id == Offer.product_id)
                             .where(Offer.cycle_id == cycles[0].id, Product.name == "Riz basmati bio"))
    order = db.session.scalar(sa.select(Order).where(Order.cycle_id == cycles[0].id, Order.household_id == martin.id))
    save_order(cycles[0].id, martin.id, {rice.id: (Decimal(0), Decimal(0))}, order.slot_id, None)
    db.session.commit()
    assert runner.invoke(args=["demo", "load"]).exit_code == 0
    assert db.session.scalar(sa.select(OrderLine.id).where(OrderLine.order_id == order.id,
                                                           OrderLine.offer_id == rice.id)) is None


def test_demo_loads_in_the_evening_after_todays_distribution_started(app, runner, monkeypatch):
    """Today's demo distribution starts at 16:30: loaded at 20:00, its deadline is not after its start."""
    from datetime import time

    import app.db as app_db
    from app.timeutil import local_to_utc, local_today

    evening = local_to_utc(local_today(), time(20, 0))
    monkeypatch.setattr(app_db, "utcnow", lambda: evening)
    result = runner.invoke(args=["demo", "load"])
    assert result.exit_code == 0, result.output
