"""What deploy/ hands Prometheus and Grafana: the alert rules' and the dashboard's
expressions, and the metric names each reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RULES = DEPLOY / "prometheus" / "derms-bridge.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "derms-bridge.json"

#: What Prometheus adds to every scrape itself; no /metrics has it.
FROM_PROMETHEUS = {"up"}
#: What the hub measures only on PostgreSQL: no scrape of a hub on SQLite has it.
POSTGRESQL_ONLY = {
    "derms_bridge_table_dead_rows",
    "derms_bridge_oldest_transaction_seconds",
    "derms_bridge_database_autovacuum",
}

_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
}
#: Grafana's variables, as Prometheus would get them once Grafana put in their values.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "6h", "$__interval": "1m"}


def rule_expressions() -> dict[str, str]:
    """Each alert's name and expression."""
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    """Each dashboard query, named by its panel's title and refId, as Grafana sends it."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found[f"{panel['title']} {target['refId']}"] = expr
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers, less the functions and
    aggregations (followed by a parenthesis), the keywords, label names and label values."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group(0)
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isdigit() or text[match.start() - 1] == "."
        ):
            continue  # a number's exponent or a duration's unit
        names.add(name)
    return names
