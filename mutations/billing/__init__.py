"""Billing feedback (DESIGN flow 4): ERP invoice, payment and credit-memo changes → outbox → CRM write-back
and subscribers. ``events`` is the payload contract, ``intake`` the poller and webhook, ``writeback`` the
CRM."""
