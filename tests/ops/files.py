"""Loading the deployment files the ops tests check."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "deploy" / "grafana"
TOPICS_SCRIPT = ROOT / "deploy" / "kafka" / "create-topics.sh"

# Values for the variables docker-compose.yml requires from the operator (${VAR:?...}).
OPERATOR_ENV = {"HOMEROOM_AUTH_ISSUER": "https://login.example.org/realms/homeroom"}
_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


def interpolate(value: str, given: dict[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with `given` as the shell environment."""
    env = OPERATOR_ENV if given is None else given

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in env and (env[name] or not (op or "").startswith(":")):
            return env[name]
        if op in (":-", "-"):
            return arg or ""
        if op in (":?", "?"):
            raise KeyError(f"compose needs ${name}: {arg}")
        return ""

    return _INTERPOLATION.sub(replace, value)


def environment(service: dict[str, Any], given: dict[str, str] | None = None) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(str(v), given) for k, v in raw.items()}


def homeroom_services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compose services that run the Homeroom image (`homeroom serve ...`)."""
    return {
        name: svc
        for name, svc in data["services"].items()
        if isinstance(svc.get("command"), list) and svc["command"][:1] == ["serve"]
    }


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a pydantic-settings class reads (upper case: it is case-insensitive)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            alias = field.alias
        if isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasPath):
            names.add(str(alias.path[0]).upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def alert_rules() -> list[dict[str, Any]]:
    data = load_yaml(ALERTS)
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def panel_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) for every query of every panel, nested rows included."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((panel.get("title", ""), target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if variable.get("type") == "query" and query:
            inner = re.search(r"label_values\((.*?)(?:,\s*\w+)?\)\s*$", query)
            found.append((f"variable {variable.get('name')}", inner.group(1) if inner else query))
    return found


def all_metric_exprs() -> list[tuple[str, str]]:
    """(where, expression) for every dashboard panel query and every alert rule."""
    exprs = [(f"{name}: {title}", expr) for name, board in dashboards().items() for title, expr in panel_exprs(board)]
    exprs += [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    return exprs


TLS_OVERLAY = ROOT / "deploy" / "tls" / "compose.tls.yml"


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags (!reset, !override): the tagged value, as the overlay gives it."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!reset", _tagged)
_ComposeLoader.add_constructor("!override", _tagged)


def tls_overlay() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(TLS_OVERLAY.read_text(), Loader=_ComposeLoader)  # noqa: S506 - SafeLoader subclass
    return data
