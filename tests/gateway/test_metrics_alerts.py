"""``deploy/prometheus/alerts.yml``: every metric a rule names is one the gateway (or a worker's listener)
exports, with the labels the rule matches on; every alert says how bad it is, what it means and where the
runbook is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.core import Metric

from gateway.metrics import Metrics
from gateway.store_metrics import StoreMetrics
from store.db import make_engine, make_sessionmaker

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
_SELECTOR = re.compile(r"\b(p2c_[a-z0-9_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_PROMETHEUS_LABELS = {"job", "instance", "le"}  # added by the scrape, or the histogram's own


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


@pytest.fixture
async def exported(sqlite_url: str) -> dict[str, set[str]]:
    """Every series name the gateway exports → its label names (store-derived families included)."""
    metrics = Metrics()
    store_metrics = StoreMetrics(metrics)
    engine = make_engine(sqlite_url)
    try:
        await store_metrics.refresh(make_sessionmaker(engine))
    finally:
        await engine.dispose()
    names: dict[str, set[str]] = {}
    families: list[Metric] = list(metrics.registry.collect())
    for family in families:
        labels = set(getattr(family, "_labelnames", ()))
        labels |= {label for sample in family.samples for label in sample.labels}
        for suffix in SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = labels
    for metric in metrics.registry._collector_to_names:  # labelled instruments with no series yet
        labelnames = set(getattr(metric, "_labelnames", ()))
        for name in metrics.registry._collector_to_names[metric]:
            names.setdefault(name, set()).update(labelnames)
    return names


def test_the_rules_file_is_prometheus_shaped() -> None:
    found = rules()
    assert len(found) >= 15
    assert len({r["alert"] for r in found}) == len(found), "alert names are unique"
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert re.fullmatch(r"\d+[smhd]", str(rule["for"])), rule["alert"]
        assert (ROOT / rule["annotations"]["runbook"]).is_file(), rule["annotations"]["runbook"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_every_metric_a_rule_names_is_exported_with_the_labels_it_matches(
    exported: dict[str, set[str]],
) -> None:
    assert "p2c_upstream_requests_total" in exported and "p2c_queue_depth" in exported
    used: set[str] = set()
    for rule in rules():
        for name, selector in _SELECTOR.findall(rule["expr"]):
            assert name in exported, f"{rule['alert']}: {name} is not exported by the gateway"
            used.add(name)
            matched = set(_MATCHER.findall(selector or "")) - _PROMETHEUS_LABELS
            missing = matched - exported[name]
            assert not missing, f"{rule['alert']}: {name} has no label {missing}"
        for clause in re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"]):
            grouped = {label.strip() for label in clause.split(",")} - _PROMETHEUS_LABELS
            names = {n for n, _ in _SELECTOR.findall(rule["expr"])}
            assert any(grouped <= exported[n] for n in names), f"{rule['alert']}: by ({clause})"
    # The list, each watched by at least one rule.
    for wanted in (
        "p2c_upstream_requests_total",
        "p2c_upstream_request_duration_seconds_bucket",
        "p2c_upstream_rate_limit_waits_total",
        "p2c_upstream_retries_total",
        "p2c_queue_depth",
        "p2c_queue_oldest_age_seconds",
        "p2c_exceptions",
        "p2c_exception_resolution_seconds_bucket",
        "p2c_provisioning_cycle_seconds_bucket",
        "p2c_subscription_connections",
        "p2c_graphql_operation_duration_seconds_bucket",
    ):
        assert wanted in used, f"no alert watches {wanted}"


def test_a_misspelt_metric_would_be_caught(exported: dict[str, set[str]]) -> None:
    names = {name for name, _ in _SELECTOR.findall('rate(p2c_upstream_request_total{system="erp"}[5m])')}
    assert names == {"p2c_upstream_request_total"} and not names <= set(exported)
