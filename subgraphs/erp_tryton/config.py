"""Tryton connection settings: ``P2C_TRYTON__*`` (the legal entities booked there: ``P2C_ERP_BY_ENTITY``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from subgraphs.common.config import SystemConfig


class TrytonConfig(SystemConfig):
    """``base_url`` is the trytond root (``http://127.0.0.1:8001``); there is no in-process sandbox."""

    database: str = Field(default="p2c", description="the trytond database (one of its -d list)")
    user: str = "admin"
    password: SecretStr = SecretStr("")
    company: int = Field(default=1, ge=1, description="company id sent in every call's context")
    language: str = "en"
    max_concurrency: int = Field(default=4, ge=1, le=256)
    page_size: int = Field(default=500, ge=1, le=10_000)
    payment_method: str = Field(default="Bank", description="account.invoice.payment.method name")
    reference_ttl_s: float = Field(default=900.0, ge=0, description="products / employees cache lifetime")
    #: Texts by which a refusal is recognised (Tryton's English messages; other languages add patterns).
    period_closed_patterns: tuple[str, ...] = ("reopen the period", "period .* is closed", "closed period")
    already_billed_patterns: tuple[str, ...] = ("has been invoiced", "already invoiced")
    after_end_date_patterns: tuple[str, ...] = ("timesheet_end_date",)  # matched in the refused domain
    before_start_date_patterns: tuple[str, ...] = ("timesheet_start_date",)
    nothing_to_invoice_patterns: tuple[str, ...] = ('can not call "invoice"',)
