"""Two pickup sites distributing the same day: volunteers choose which one their lists show, and write to both."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Household
from orders.documents import store_document
from orders.models import OrderLine
from orders.payment_models import Payment
from pickup.models import Pickup
from pickup.services import current_distribution, current_distributions, paris_today
from tests.factories import SiteFactory, UserFactory
from tests.helpers import csrf_token, login, post_form
from tests.pickup.conftest import Thursday, make_thursday, text

VOLUNTEER = "benevole@example.org"
COORDINATOR = "coord@example.org"


@dataclass
class TwoSites:
    """Site A (the café) and site B (the hall) distribute today; site C next week only."""

    a: Thursday
    b: Thursday
    later: Thursday


def _rename_households(day: Thursday, names: dict[str, str]) -> None:
    """Give a distribution's households their own names, so each site's bags read differently."""
    for order, name in ((day.dupont, names["dupont"]), (day.martin, names["martin"]), (day.leroy, names["leroy"])):
        db.session.get(Household, order.household_id).name = name


@pytest.fixture()
def sites(app) -> TwoSites:
    """B is created first (smaller ids): the default is still A, the first site by name."""
    b = make_thursday(tag=" bis")
    b.site.name = "Salle Jean Vilar"
    _rename_households(b, {"dupont": "Foyer Bernard", "martin": "Foyer Vidal", "leroy": "Foyer Roux"})
    a = make_thursday()
    later = make_thursday(day=paris_today() + timedelta(days=7), tag=" ter")
    later.site.name = "Maison du Parc"
    _rename_households(later, {"dupont": "Foyer Lointain", "martin": "Foyer Plustard", "leroy": "Foyer Semaine"})
    UserFactory(email=VOLUNTEER, name="Paul Bénévole", roles=["volunteer"])
    UserFactory(email=COORDINATOR, name="Claire Coordinatrice", roles=["coordinator"])
    db.session.commit()
    return TwoSites(a, b, later)


def _chosen(page: str) -> str:
    """The label of the site the chooser shows as chosen (not a link)."""
    match = re.search(r'<span class="button primary" aria-current="page">([^<]+)</span>', page)
    assert match, "no site chooser on the page"
    return match.group(1)


def _bag_url(order) -> str:
    return f"/retrait/preparation/sac/{order.id}"


def _desk_url(order) -> str:
    return f"/retrait/accueil/sac/{order.id}"


# --------------------------------------------------------------------------- services


def test_each_site_has_its_current_distribution_and_a_week_later_is_not_one(sites):
    assert [c.id for c in current_distributions()] == [sites.a.cycle.id, sites.b.cycle.id]
    assert current_distribution().id == sites.a.cycle.id
    assert current_distribution(site_id=sites.b.site.id).id == sites.b.cycle.id
    # A site whose next distribution is next week's falls back to the first one.
    assert current_distribution(site_id=sites.later.site.id).id == sites.a.cycle.id


def test_a_site_distributing_the_next_day_is_current_too(app):
    thursday = make_thursday()
    friday = make_thursday(day=paris_today() + timedelta(days=1), tag=" bis")
    db.session.commit()
    assert [c.id for c in current_distributions()] == [thursday.cycle.id, friday.cycle.id]


# --------------------------------------------------------------------------- listing pages and the chooser


def test_volunteer_sees_site_a_by_default_then_chooses_site_b_and_it_stays_chosen(client, sites):
    login(client, VOLUNTEER)
    page = text(client.get("/retrait/preparation"))
    assert "Lieu :" in page
    assert _chosen(page).startswith("Café des Tilleuls, ")
    assert f'href="/retrait/preparation?lieu={sites.b.site.id}">Salle Jean Vilar, ' in page
    # The distribution a week later at a third site is not offered.
    assert "Maison du Parc" not in page
    assert "Sac n° 1 · Foyer Dupont" in page and "Foyer Bernard" not in page

    page = text(client.get(f"/retrait/preparation?lieu={sites.b.site.id}"))
    assert _chosen(page).startswith("Salle Jean Vilar, ")
    assert f'href="/retrait/preparation?lieu={sites.a.site.id}">Café des Tilleuls, ' in page
    assert "Sac n° 1 · Foyer Bernard" in page and "Sac n° 3 · Foyer Roux" in page
    assert "Foyer Dupont" not in page

    # The other pages follow the choice without ?lieu=.
    page = text(client.get("/retrait/accueil?q=foyer"))
    assert _chosen(page).startswith("Salle Jean Vilar, ")
    assert "Foyer Vidal" in page and "Foyer Martin" not in page
    assert f'action="/retrait/distribution/{sites.b.cycle.id}/fin"' in page
    assert f'name="lieu" value="{sites.b.site.id}"' in page
    page = text(client.get("/retrait/caisse"))
    assert _chosen(page).startswith("Salle Jean Vilar, ")
    assert f'href="/retrait/accueil?lieu={sites.b.site.id}"' in page

    page = text(client.get(f"/retrait/caisse?lieu={sites.a.site.id}"))
    assert _chosen(page).startswith("Café des Tilleuls, ")
    assert "Foyer Dupont" in text(client.get("/retrait/preparation"))


def test_coordinator_board_shows_the_chosen_site(client, sites):
    login(client, COORDINATOR)
    page = text(client.get("/retrait/tableau"))
    assert _chosen(page).startswith("Café des Tilleuls, ")
    assert f'action="/retrait/distribution/{sites.a.cycle.id}/fin"' in page
    page = text(client.get(f"/retrait/tableau?lieu={sites.b.site.id}"))
    assert _chosen(page).startswith("Salle Jean Vilar, ")
    assert f'action="/retrait/distribution/{sites.b.cycle.id}/fin"' in page


@pytest.mark.parametrize("lieu", ["abc", "99999999999", "2147483648", "-1", "0", "1.5", "٣", "7" * 5000, "",
                                  "site-sans-distribution", "site-la-semaine-prochaine"])
def test_unknown_lieu_shows_the_default_site(client, sites, lieu):
    if lieu == "site-sans-distribution":
        lieu = str(SiteFactory(name="Jardin partagé").id)
        db.session.commit()
    elif lieu == "site-la-semaine-prochaine":
        lieu = str(sites.later.site.id)
    login(client, VOLUNTEER)
    for url in ("/retrait/preparation", "/retrait/accueil", "/retrait/caisse"):
        response = client.get(f"{url}?lieu={lieu}")
        assert response.status_code == 200, url
        assert _chosen(text(response)).startswith("Café des Tilleuls, "), url
    assert "Foyer Dupont" in text(client.get(f"/retrait/preparation?lieu={lieu}"))


def test_unknown_lieu_keeps_the_site_chosen_before(client, sites):
    login(client, VOLUNTEER)
    client.get(f"/retrait/preparation?lieu={sites.b.site.id}")
    page = text(client.get(f"/retrait/preparation?lieu={sites.later.site.id}"))
    assert _chosen(page).startswith("Salle Jean Vilar, ") and "Foyer Bernard" in page


def test_one_site_shows_no_chooser(client, thursday):
    login(client, thursday.coordinator_email)
    for url in ("/retrait/preparation", "/retrait/accueil", "/retrait/caisse", "/retrait/tableau"):
        page = text(client.get(f"{url}?lieu={thursday.site.id}"))
        assert "Lieu :" not in page and "aria-current=\"page\">Café" not in page, url
        assert "lieu=" not in page, url
    page = text(client.get(_bag_url(thursday.dupont)))
    assert 'href="/retrait/preparation">' in page


def test_listing_page_queries_do_not_grow_with_the_sites(client, sites, count_queries):
    login(client, VOLUNTEER)
    with count_queries() as two:
        assert client.get("/retrait/preparation").status_code == 200
    third = make_thursday(tag=" quater")
    third.site.name = "Bibliothèque"
    db.session.commit()
    with count_queries() as three:
        page = text(client.get("/retrait/preparation"))
    assert "Bibliothèque, " in page
    selects = [[s for s in c["statements"] if s.lstrip().upper().startswith("SELECT")] for c in (two, three)]
    assert len(selects[1]) == len(selects[0])


# --------------------------------------------------------------------------- writing follows the bag, not the chooser


def test_volunteer_weighs_and_readies_a_bag_of_site_b_while_the_chooser_shows_a(client, sites):
    login(client, VOLUNTEER)
    client.get(f"/retrait/preparation?lieu={sites.a.site.id}")
    bag = sites.b.dupont
    apples = sites.b.line(bag, sites.b.apples)
    salad = sites.b.line(bag, sites.b.salad)
    page = text(client.get(_bag_url(bag)))
    assert "Foyer Bernard" in page
    assert f'href="/retrait/preparation?lieu={sites.b.site.id}">' in page

    response = post_form(client, f"/retrait/preparation/ligne/{apples.id}/poids", {f"w{apples.id}-weight": "1,8"},
                         form_url=_bag_url(bag))
    assert response.status_code == 200 and "Poids enregistré." in text(response)
    response = post_form(client, f"/retrait/preparation/ligne/{salad.id}/manque", {f"s{salad.id}-received": "0"},
                         form_url=_bag_url(bag))
    assert "Manque enregistré" in text(response)
    db.session.expire_all()
    assert db.session.get(OrderLine, apples.id).quantity_prepared == Decimal("1.800")
    assert db.session.get(OrderLine, salad.id).missing is True

    other = sites.b.martin
    ticked = [str(line.id) for line in other.lines]
    response = post_form(client, f"/retrait/preparation/sac/{other.id}/pret", {"line": ticked},
                         form_url=_bag_url(other))
    page = text(response)
    assert "Sac prêt." in page
    # Back on the list of the bag's site.
    assert _chosen(page).startswith("Salle Jean Vilar, ") and "Foyer Vidal" in page
    assert db.session.scalar(sa.select(Pickup.prepared_at).where(Pickup.order_id == other.id)) is not None


def test_desk_takes_a_payment_and_hands_over_a_bag_of_site_b_while_the_chooser_shows_a(client, sites):
    login(client, VOLUNTEER)
    client.get(f"/retrait/accueil?lieu={sites.a.site.id}")
    bag = sites.b.martin
    page = client.get(_desk_url(bag)).get_data(as_text=True)
    assert "Foyer Vidal" in text(client.get(_desk_url(bag)))
    token = re.search(r'name="token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post(f"{_desk_url(bag)}/paiement", follow_redirects=True, data={
        "csrf_token": csrf_token(page), "token": token, "method": "cash", "amount": "7,50"})
    assert "Paiement enregistré." in text(response)
    payment = db.session.scalar(sa.select(Payment).where(Payment.order_id == bag.id))
    assert payment is not None and payment.amount_cents == 750 and payment.method == "cash"

    response = post_form(client, f"{_desk_url(bag)}/remis", {}, form_url=_desk_url(bag))
    page = text(response)
    assert "Sac remis." in page and _chosen(page).startswith("Salle Jean Vilar, ")
    assert db.session.scalar(sa.select(Pickup.collected_at).where(Pickup.order_id == bag.id)) is not None
    # Site A's cash is untouched; site B's till shows the payment.
    assert "7,50" not in text(client.get(f"/retrait/caisse?lieu={sites.a.site.id}")).replace("\xa0", " ")
    assert "7,50" in text(client.get(f"/retrait/caisse?lieu={sites.b.site.id}")).replace("\xa0", " ")


def test_end_of_site_b_distribution_leaves_site_a_alone(client, sites):
    login(client, VOLUNTEER)
    url = f"/retrait/distribution/{sites.b.cycle.id}/fin"
    page = text(client.get(url))
    assert "Foyer Bernard" in page and "Foyer Dupont" not in page
    response = post_form(client, url, {}, form_url=url)
    assert "Distribution terminée : 3 sacs non récupérés." in text(response)
    no_shows = set(db.session.scalars(sa.select(Pickup.order_id).where(Pickup.no_show.is_(True))))
    assert no_shows == {sites.b.dupont.id, sites.b.martin.id, sites.b.leroy.id}


def test_bag_of_a_distribution_that_is_not_current_is_still_refused(client, sites):
    login(client, VOLUNTEER)
    client.get(f"/retrait/preparation?lieu={sites.later.site.id}")
    bag = sites.later.dupont
    for url in (_bag_url(bag), _desk_url(bag)):
        response = client.get(url)
        assert response.status_code == 404
        assert "n'appartient pas à la distribution en cours" in text(response)
    apples = sites.later.line(bag, sites.later.apples)
    response = post_form(client, f"/retrait/preparation/ligne/{apples.id}/poids", {f"w{apples.id}-weight": "1"},
                         form_url=_bag_url(sites.a.dupont))
    assert response.status_code == 404
    assert "Ce produit n'appartient pas à la distribution en cours." in text(response)
    response = post_form(client, f"{_desk_url(bag)}/remis", {}, form_url=_desk_url(sites.a.dupont))
    assert response.status_code == 404
    response = post_form(client, f"/retrait/distribution/{sites.later.cycle.id}/fin", {},
                         form_url="/retrait/accueil")
    assert response.status_code == 404
    assert "Cette distribution n'est pas celle en cours." in text(response)
    db.session.expire_all()
    assert db.session.get(OrderLine, apples.id).quantity_prepared is None
    assert db.session.scalar(sa.select(sa.func.count(Pickup.id))) == 0


# --------------------------------------------------------------------------- documents


def test_volunteer_opens_the_lists_of_either_site_but_not_next_weeks(client, sites):
    documents = {
        name: store_document(day.cycle.id, "bag_slips", "all", "volunteer", f"fiches-{name}.pdf",
                             b"%PDF-1.4 " + name.encode())
        for name, day in (("a", sites.a), ("b", sites.b), ("later", sites.later))
    }
    db.session.commit()
    login(client, VOLUNTEER)
    for name in ("a", "b"):
        response = client.get(f"/commandes/documents/{documents[name].id}")
        assert response.status_code == 200, name
        assert response.data == b"%PDF-1.4 " + name.encode()
    assert client.get(f"/commandes/documents/{documents['later'].id}").status_code == 404


def test_an_ended_distribution_gives_way_to_the_sites_next_closed_one(app):
    """Monday's distribution ended; Thursday's orders are closed at the same site: volunteers prepare Thursday's.
    Alone, an ended distribution stays the day's (the till, bags not collected)."""
    monday = make_thursday(status="distributed")
    thursday = make_thursday(day=paris_today() + timedelta(days=3), tag=" jeudi")
    thursday.cycle.site_id = monday.cycle.site_id
    db.session.commit()
    assert [c.id for c in current_distributions()] == [thursday.cycle.id]
    thursday.cycle.status = "open"
    db.session.commit()
    assert [c.id for c in current_distributions()] == [monday.cycle.id]


def test_a_distribution_days_ahead_cannot_be_ended(client, app):
    """Thursday's bags are prepared on Monday: ending it then would mark them all not collected."""
    from orders.models import Cycle
    from pickup.models import Pickup

    monday = make_thursday(status="distributed")
    thursday = make_thursday(day=paris_today() + timedelta(days=3), tag=" jeudi")
    thursday.cycle.site_id = monday.cycle.site_id
    UserFactory(email=VOLUNTEER, roles=["volunteer"])
    db.session.commit()
    login(client, VOLUNTEER)
    url = f"/retrait/distribution/{thursday.cycle.id}/fin"
    desk = text(client.get("/retrait/accueil"))
    assert "Sacs à remettre" in desk or "Accueil" in desk
    assert url not in desk and "Terminer la distribution" not in desk
    assert client.get(url).status_code == 409
    response = post_form(client, url, {}, form_url="/retrait/accueil")
    assert response.status_code == 409 and "pas encore eu lieu" in text(response)
    db.session.expire_all()
    assert db.session.get(Cycle, thursday.cycle.id).status == "finalized"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Pickup).where(Pickup.no_show.is_(True))) == 0
