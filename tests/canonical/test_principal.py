from __future__ import annotations

from dataclasses import dataclass

import pytest

from canonical.errors import PermissionDenied
from canonical.principal import PERMISSIONS, Permission, Principal, Role

P = Permission
# The whole table, spelled out row by row so a change to who-may-do-what is a visible diff here too.
EXPECTED: dict[Role, set[Permission]] = {
    Role.SALES: {P.PROVISION},
    Role.DELIVERY: {P.PROVISION, P.POST_TIME},
    Role.FINANCE: {P.READ_FINANCIALS, P.REPLAY_EXCEPTION, P.DISMISS_EXCEPTION, P.POST_TIME, P.READ_AUDIT},
    Role.INTEGRATION_ADMIN: {
        P.REPLAY_EXCEPTION,
        P.DISMISS_EXCEPTION,
        P.PROVISION,
        P.POST_TIME,
        P.READ_AUDIT,
        P.ADMIN,
    },
    Role.AUDITOR: {P.READ_FINANCIALS, P.READ_AUDIT},
}


def person(*roles: Role, entities: tuple[str, ...] = ("US01",), all_entities: bool = False) -> Principal:
    return Principal("ana", frozenset(roles), frozenset(entities), all_entities=all_entities)


@pytest.mark.parametrize("role", list(Role))
def test_permission_table_per_role(role: Role) -> None:
    principal = person(role)
    assert {permission for permission in Permission if principal.may(permission)} == EXPECTED[role]


def test_every_permission_is_in_the_table() -> None:
    assert set(PERMISSIONS) == set(Permission)


@pytest.mark.parametrize("role", list(Role))
def test_financials_need_finance_or_auditor(role: Role) -> None:
    assert person(role).can_see_financials() is (role in {Role.FINANCE, Role.AUDITOR})


def test_no_roles_may_nothing() -> None:
    principal = person()
    assert not any(principal.may(permission) for permission in Permission)
    assert not principal.has_role(*Role)


def test_roles_combine() -> None:
    principal = person(Role.SALES, Role.AUDITOR)
    assert principal.may(P.PROVISION)
    assert principal.can_see_financials()
    assert not principal.may(P.ADMIN)


def test_roles_are_normalised_from_names() -> None:
    principal = Principal("ana", frozenset({"finance"}))  # type: ignore[arg-type]
    assert principal.roles == {Role.FINANCE}
    assert principal.has_role(Role.FINANCE)
    with pytest.raises(ValueError):
        Principal("ana", frozenset({"boss"}))  # type: ignore[arg-type]


def test_star_is_not_an_entity_code() -> None:
    with pytest.raises(ValueError, match="all_entities"):
        Principal("ana", legal_entities=frozenset({"*"}))


def test_no_entities_sees_none() -> None:
    principal = person(Role.FINANCE, entities=())
    assert not principal.can_see_entity("US01")
    assert principal.visible_entities(["US01", "GB01"]) == []


def test_all_entities_sees_every_entity() -> None:
    principal = person(Role.FINANCE, entities=(), all_entities=True)
    assert principal.can_see_entity("ZZ99")
    assert principal.visible_entities(["US01", "GB01"]) == ["US01", "GB01"]


def test_visible_entities_keeps_order_and_filters() -> None:
    principal = person(Role.SALES, entities=("US01", "DE01"))
    assert principal.visible_entities(["GB01", "DE01", "US01", "FR01"]) == ["DE01", "US01"]


@dataclass
class Row:
    id: int
    legal_entity: str | None


def test_visible_rows_are_filtered_silently() -> None:
    rows = [Row(1, "US01"), Row(2, "GB01"), Row(3, None), Row(4, "US01")]
    assert [r.id for r in person(Role.SALES).visible(rows, lambda r: r.legal_entity)] == [1, 4]
    everything = person(Role.AUDITOR, entities=(), all_entities=True)
    assert [r.id for r in everything.visible(rows, lambda r: r.legal_entity)] == [1, 2, 3, 4]


def test_require_role_names_action_and_roles() -> None:
    with pytest.raises(PermissionDenied) as caught:
        person(Role.SALES).require_role(Role.FINANCE, Role.AUDITOR, action="invoiceMargin")
    error = caught.value
    assert error.code == "FORBIDDEN"
    assert error.http_status == 403
    assert "invoiceMargin" in error.message
    assert "auditor" in error.message and "finance" in error.message
    assert error.as_extensions() == {
        "code": "FORBIDDEN",
        "action": "invoiceMargin",
        "requiredRoles": ["auditor", "finance"],
    }
    person(Role.FINANCE).require_role(Role.FINANCE, Role.AUDITOR, action="invoiceMargin")


def test_require_permission() -> None:
    with pytest.raises(PermissionDenied) as caught:
        person(Role.DELIVERY).require(P.REPLAY_EXCEPTION, action="replayException")
    assert caught.value.extensions["requiredRoles"] == ["finance", "integration_admin"]
    with pytest.raises(PermissionDenied, match="read_audit"):
        person(Role.SALES).require(P.READ_AUDIT)
    person(Role.AUDITOR).require(P.READ_AUDIT)


def test_require_entity_names_only_the_given_code() -> None:
    with pytest.raises(PermissionDenied) as caught:
        person(Role.INTEGRATION_ADMIN).require_entity("GB01", action="provisionEngagement")
    error = caught.value
    assert error.code == "FORBIDDEN"
    assert error.message == "provisionEngagement is not allowed in legal entity GB01"
    assert error.as_extensions() == {
        "code": "FORBIDDEN",
        "action": "provisionEngagement",
        "legalEntity": "GB01",
    }
    person(Role.INTEGRATION_ADMIN).require_entity("US01", action="provisionEngagement")


def test_system_principal() -> None:
    worker = Principal.system("time-poster")
    assert worker.subject == "system:time-poster"
    assert worker.roles == {Role.INTEGRATION_ADMIN}
    assert worker.all_entities and worker.can_see_entity("GB01")
    assert worker.may(P.POST_TIME) and worker.may(P.ADMIN)
    worker.require_entity("GB01", action="postTime")


def test_principal_is_immutable_and_hashable() -> None:
    principal = person(Role.FINANCE)
    with pytest.raises(AttributeError):
        principal.subject = "eve"  # type: ignore[misc]
    assert hash(principal) == hash(person(Role.FINANCE))
