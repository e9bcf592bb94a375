"""Build the demo company inside an activated Tryton database — run in its own process.

    python -m subgraphs.erp_tryton.sandbox.build CONF DATABASE --company "Northwind Advisory GmbH" \
        --currency EUR --seed 7 --entity EU01 --years 2026 2027

Tryton keeps its pool and configuration in process-wide globals, so the gateway never imports trytond:
``server.py`` runs ``trytond-admin`` and then this module in a child process. The set-up goes through
proteus in trytond mode (the same code path the Tryton client uses, on-change logic included): company
and currency, the minimal chart of accounts with its default receivable / payable / revenue accounts,
fiscal years with monthly periods and invoice sequences, a payment term, one service product per CRM
product code (hours, priced from the mapping's rate card), and one employee per demo-firm employee of
the entity. Each part is skipped when it exists, so running it again changes nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from decimal import Decimal
from typing import Any

# Service products: CRM product code → (name, list price per hour). Prices are the demo firm's bill rates.
PRODUCTS: dict[str, tuple[str, Decimal]] = {
    "CONSULT-SR": ("Consulting - Senior", Decimal("220")),
    "CONSULT-JR": ("Consulting", Decimal("160")),
    "IMPL-FIXED": ("Implementation - Fixed Fee", Decimal("180")),
    "MS-RETAINER": ("Managed Services - Retainer", Decimal("140")),
    "MS-SUB": ("Managed Services - Subscription", Decimal("140")),
    "TRAINING": ("Training", Decimal("150")),
    "PM": ("Project Management", Decimal("190")),
}
CURRENCY_NAMES = {"EUR": ("Euro", "€"), "USD": ("U.S. Dollar", "$"), "GBP": ("Pound Sterling", "£")}


def _company(model: Any, wizard: Any, name: str, currency_code: str) -> Any:
    Company = model.get("company.company")
    existing = Company.find([])
    if existing:
        return existing[0]
    Currency = model.get("currency.currency")
    found = Currency.find([("code", "=", currency_code)])
    if found:
        currency = found[0]
    else:
        label, symbol = CURRENCY_NAMES.get(currency_code, (currency_code, currency_code))
        currency = Currency(name=label, symbol=symbol, code=currency_code, rounding=Decimal("0.01"))
        currency.save()
        Rate = model.get("currency.currency.rate")
        rate = Rate(date=dt.date(2000, 1, 1), rate=Decimal(1), currency=currency)
        rate.save()
    party = model.get("party.party")(name=name)
    party.save()
    config = wizard("company.company.config")
    config.execute("company")
    config.form.party = party
    config.form.currency = currency
    config.execute("add")
    return Company.find([])[0]


def _chart(model: Any, wizard: Any, company: Any) -> dict[str, Any]:
    Account = model.get("account.account")

    def accounts() -> dict[str, Any]:
        found = {}
        for kind in ("receivable", "payable", "revenue", "expense"):
            rows = Account.find(
                [(f"type.{kind}", "=", True), ("company", "=", company.id), ("closed", "!=", True)], limit=1
            )
            if rows:
                found[kind] = rows[0]
        cash = Account.find([("company", "=", company.id), ("code", "=", "1.1.1")], limit=1)
        if cash:
            found["cash"] = cash[0]
        return found

    if Account.find([("company", "=", company.id)], limit=1):
        return accounts()
    template_id = model.get("ir.model.data").get_id("account.account_template_root_en", {})
    chart = wizard("account.create_chart")
    chart.execute("account")
    chart.form.account_template = model.get("account.account.template")(template_id)
    chart.form.company = company
    chart.execute("create_account")
    found = accounts()
    if found["receivable"].party_required:
        chart.form.account_receivable = found["receivable"]
    if found["payable"].party_required:
        chart.form.account_payable = found["payable"]
    if hasattr(chart.form, "category_account_expense"):
        chart.form.category_account_expense = found["expense"]
    if hasattr(chart.form, "category_account_revenue"):
        chart.form.category_account_revenue = found["revenue"]
    chart.execute("create_properties")
    return found


def _fiscal_year(model: Any, company: Any, year: int) -> None:
    FiscalYear = model.get("account.fiscalyear")
    if FiscalYear.find([("name", "=", str(year)), ("company", "=", company.id)]):
        return
    Strict = model.get("ir.sequence.strict")
    SequenceType = model.get("ir.sequence.type")
    (move_type,) = SequenceType.find([("name", "=", "Account Move")], limit=1)
    (invoice_type,) = SequenceType.find([("name", "=", "Invoice")], limit=1)
    move_sequence = Strict(name=f"Moves {year}", sequence_type=move_type, company=company)
    move_sequence.save()
    invoice_sequence = Strict(
        name=f"Invoices {year}", sequence_type=invoice_type, company=company, prefix=f"INV/{year}/"
    )
    invoice_sequence.save()
    fiscal_year = FiscalYear(
        name=str(year),
        start_date=dt.date(year, 1, 1),
        end_date=dt.date(year, 12, 31),
        company=company,
        move_sequence=move_sequence,
    )
    (sequences,) = fiscal_year.invoice_sequences
    sequences.out_invoice_sequence = invoice_sequence
    sequences.in_invoice_sequence = invoice_sequence
    sequences.out_credit_note_sequence = invoice_sequence
    sequences.in_credit_note_sequence = invoice_sequence
    fiscal_year.save()
    fiscal_year.click("create_period")


def _payment_term(model: Any) -> Any:
    Term = model.get("account.invoice.payment_term")
    found = Term.find([("name", "=", "NET30")])
    if found:
        return found[0]
    term = Term(name="NET30")
    term.lines.new(type="remainder", relativedeltas=[])
    term.save()
    line = term.lines[0]
    line.relativedeltas.new(days=30)
    term.save()
    return term


def _payment_method(model: Any, company: Any, cash: Any) -> int:
    Method = model.get("account.invoice.payment.method")
    found = Method.find([("name", "=", "Bank")])
    if found:
        return int(found[0].id)
    (journal,) = model.get("account.journal").find([("type", "=", "cash")], limit=1)
    method = Method(name="Bank", company=company, journal=journal, credit_account=cash, debit_account=cash)
    method.save()
    return int(method.id)


def _products(model: Any, revenue: Any) -> dict[str, int]:
    Category = model.get("product.category")
    found = Category.find([("name", "=", "Services")])
    if found:
        category = found[0]
    else:
        category = Category(name="Services", accounting=True, account_revenue=revenue)
        category.save()
    (hour,) = model.get("product.uom").find([("name", "=", "Hour")])
    Product = model.get("product.product")
    Template = model.get("product.template")
    ids = {}
    for code, (name, price) in PRODUCTS.items():
        existing = Product.find([("code", "=", code)])
        if existing:
            ids[code] = existing[0].id
            continue
        template = Template(
            name=name, code=code, type="service", default_uom=hour, list_price=price,
            account_category=category,
        )
        template.save()
        ids[code] = template.products[0].id
    return ids


def _employees(model: Any, company: Any, people: list[dict[str, str]]) -> dict[str, int]:
    Employee = model.get("company.employee")
    Party = model.get("party.party")
    ids = {}
    for person in people:
        found = Employee.find([("party.code", "=", person["email"])])
        if found:
            ids[person["email"]] = found[0].id
            continue
        party = Party(name=person["name"], code=person["email"])
        party.save()
        employee = Employee(party=party, company=company)
        employee.save()
        ids[person["email"]] = employee.id
    return ids


def build(args: argparse.Namespace) -> dict[str, Any]:
    from proteus import Model, Wizard
    from proteus import config as proteus_config

    config = proteus_config.set_trytond(args.database, config_file=args.config)
    company = _company(Model, Wizard, args.company, args.currency)
    config._context = Model.get("res.user").get_preferences(True, {})
    accounts = _chart(Model, Wizard, company)
    for year in args.years:
        _fiscal_year(Model, company, year)
    term = _payment_term(Model)
    payment_method = _payment_method(Model, company, accounts["cash"])
    products = _products(Model, accounts["revenue"])
    people = json.loads(args.employees) if args.employees else []
    employees = _employees(Model, company, people)
    return {
        "company": company.id,
        "currency": args.currency,
        "payment_term": term.id,
        "payment_method": payment_method,
        "products": products,
        "employees": employees,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("database")
    parser.add_argument("--company", required=True)
    parser.add_argument("--currency", default="EUR")
    parser.add_argument("--years", type=int, nargs="+", required=True)
    parser.add_argument("--employees", default="", help="JSON list of {name, email}")
    args = parser.parse_args(argv)
    json.dump(build(args), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
