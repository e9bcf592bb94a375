"""Which canonical id a record gets — the one rule every flow and resolver follows.

The system that first introduced a record mints its id (``canonical.ids.canonical_id``, UUIDv5), so
running backfill again, replaying an event or losing the store never mints a second id for one thing:

    ============  =============================================  ==========================================
    record        canonical id                                   why
    ============  =============================================  ==========================================
    account       ``P2C_Id__c`` when the CRM account carries     the CRM introduces accounts (pipeline
                  one, else ``canonical_id("crm", "Account",     starts there); same rule as
                  <Salesforce Account Id>)``                     ``subgraphs.crm.mapping``
    customer      ``externalId`` when set, else                  an ERP customer no CRM account matches is
    (no account)  ``canonical_id("erp", "customer", <id>)``      an ERP-introduced record; same rule as
                                                                 ``subgraphs.erp.mapping.record_id``.
                                                                 Backfill does **not** store xrefs for
                                                                 these: when a CRM account is matched to it
                                                                 later, the account's id wins.
    project       ``externalId`` of the ERP job when set, else   a day-one project exists as an ERP job and
    (day one)     ``canonical_id("erp", "job", <job id>)``       a PSA project sharing its code; the ERP job
                                                                 is the record of the contract side and
                                                                 ``subgraphs.erp.mapping`` derives the same
    project       ``canonical_id("crm", "Project", <Opportunity  a project the gateway provisions from a
    (provisioned) Id>)`` — written to the ERP job as its          closed-won deal: the won opportunity
                  ``externalId``                                 introduced it. Record type ``Project``
                                                                 keeps it apart from the opportunity's own
                                                                 id (one canonical id has one id per system)
    ============  =============================================  ==========================================

Cross-references use the canonical entity names as ``entity_type``: ``Account`` (crm Account, erp
customer, psa client) and ``Project`` (erp job, psa project).

>>> account_canonical_id("001000000000001AAA") == account_id_of({"Id": "001000000000001AAA"})
True
>>> account_id_of({"Id": "001000000000001AAA", "P2C_Id__c": "x"})
'x'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from canonical.ids import canonical_id

ACCOUNT = "Account"
PROJECT = "Project"


def account_canonical_id(crm_account_id: str) -> str:
    """The canonical id of the account the CRM introduced as ``crm_account_id``."""
    return canonical_id("crm", "Account", crm_account_id)


def account_id_of(crm_account: Mapping[str, Any]) -> str:
    """A CRM Account record's canonical id: its ``P2C_Id__c`` stamp, or derived from its ``Id``."""
    stamped = crm_account.get("P2C_Id__c")
    if stamped:
        return str(stamped)
    return account_canonical_id(str(crm_account["Id"]))


def customer_canonical_id(erp_customer_id: str | int) -> str:
    """The canonical id of an ERP customer no CRM account matches (the ERP introduced it)."""
    return canonical_id("erp", "customer", str(erp_customer_id))


def project_canonical_id(erp_job_id: str | int) -> str:
    """The canonical id of a day-one project: the ERP job that predates the gateway introduced it."""
    return canonical_id("erp", "job", str(erp_job_id))


def provisioned_project_canonical_id(opportunity_crm_id: str) -> str:
    """The canonical id of the project the gateway provisions for a won opportunity."""
    return canonical_id("crm", "Project", opportunity_crm_id)


def project_id_of(erp_job: Mapping[str, Any]) -> str:
    """An ERP job row's project canonical id: its ``externalId`` (written by us), or derived from its id."""
    external = erp_job.get("externalId", erp_job.get("externalid"))
    if external:
        return str(external)
    return project_canonical_id(str(erp_job["id"]))
