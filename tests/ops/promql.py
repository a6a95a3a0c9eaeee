"""Just enough PromQL to check expressions without Prometheus: the metric names an
expression reads, and the syntax errors a typo makes most often (unbalanced brackets,
unknown functions, bad durations). promtool is not installable here and no Python
library parses PromQL, so this is a careful tokenizer, not a full parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

FUNCTIONS = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "mad_over_time",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sort",
        "sort_by_label",
        "sort_by_label_desc",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "time",
        "timestamp",
        "vector",
        "year",
        "double_exponential_smoothing",
    ]
)
AGGREGATIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ]
)
KEYWORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "inf",
        "nan",
    ]
)
# Series Prometheus writes itself for every target, not exported by the services.
SYNTHETIC = frozenset(
    [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ]
)
# Grafana's own variables ($__rate_interval, $__range, $service) stand for durations or values.
GRAFANA_VARIABLE = re.compile(r"\$(?:__\w+|\{\w+\}|\w+)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class PromQLError(ValueError):
    pass


def _strip(expr: str) -> str:
    """The expression without strings, label matchers, ranges and grouping label lists."""
    text = GRAFANA_VARIABLE.sub("5m", expr)
    text = STRING.sub('""', text)
    _check_balanced(text)
    for inner in re.findall(r"\[([^\]]*)\]", text):
        parts = inner.split(":")  # [5m] or a subquery [1h:5m]
        if not all(DURATION.match(p.strip()) for p in parts if p.strip()) or not parts[0].strip():
            raise PromQLError(f"bad range [{inner}] in {expr!r}")
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    return text


def _check_balanced(text: str) -> None:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            raise PromQLError(f"unbalanced {ch!r} in {text!r}")
    if stack:
        raise PromQLError(f"unclosed {stack[-1]!r} in {text!r}")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads; PromQLError on an unknown function or bad syntax."""
    text = _strip(expr)
    names: set[str] = set()
    for match in IDENTIFIER.finditer(text):
        word = match.group()
        if word in KEYWORDS:
            continue
        following = text[match.end() :].lstrip()
        if following.startswith("("):
            if word not in FUNCTIONS and word not in AGGREGATIONS:
                raise PromQLError(f"unknown function {word!r} in {expr!r}")
            continue
        if word in AGGREGATIONS:
            continue
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # the exponent or suffix of a number, e.g. 1e3
        names.add(word)
    if not names and "time()" not in text and "vector(" not in text:
        raise PromQLError(f"no metric in {expr!r}")
    return names


def exported_series(registry: CollectorRegistry = REGISTRY) -> set[str]:
    """Every series name a scrape of this registry can show, by metric type
    (counter: name_total; histogram: name_bucket, _sum, _count; ...)."""
    series: set[str] = set()
    for family in registry.collect():
        series.update(series_names(family.name, family.type))
    return series


def series_names(name: str, kind: str) -> set[str]:
    if kind == "counter":
        base = name.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind == "gaugehistogram":
        return {f"{name}_bucket", f"{name}_gsum", f"{name}_gcount"}
    if kind == "summary":
        return {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
    if kind == "info":
        return {f"{name.removesuffix('_info')}_info"}
    return {name}


def series_from_exposition(text: str) -> set[str]:
    """Series names a /metrics answer declares (its # TYPE lines), including families with no samples yet."""
    series: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            series.update(series_names(name, kind.strip()))
        elif line and not line.startswith("#"):
            series.add(IDENTIFIER.match(line).group())  # type: ignore[union-attr]
    return series


def unknown_metrics(exprs: Iterable[str], exported: set[str]) -> dict[str, set[str]]:
    """expression → the names in it that nothing exports."""
    missing: dict[str, set[str]] = {}
    for expr in exprs:
        names = {n for n in metric_names(expr) if n not in SYNTHETIC and n not in exported}
        if names:
            missing[expr] = names
    return missing


TARGET_LABELS = frozenset({"job", "instance", "le", "quantile", "__name__"})


def registered_labels(registry: CollectorRegistry = REGISTRY) -> dict[str, set[str]]:
    """series name → label names, for every metric object in the registry."""
    labels: dict[str, set[str]] = {}
    for collector in list(registry._collector_to_names):  # no public index of collectors
        names = getattr(collector, "_labelnames", None)
        kind = getattr(collector, "_type", None)
        name = getattr(collector, "_name", None)
        if names is None or kind is None or name is None:
            continue
        for series in series_names(name, kind):
            labels[series] = set(names)
    return labels


def label_problems(expr: str, labels: dict[str, set[str]]) -> list[str]:
    """Labels an expression matches on or groups by that its metrics do not have."""
    text = STRING.sub('""', GRAFANA_VARIABLE.sub("5m", expr))
    problems: list[str] = []
    for metric, matchers in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", text):
        known = labels.get(metric)
        if known is None:
            continue
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
            if label not in known | TARGET_LABELS:
                problems.append(f"{metric} has no label {label!r}")
    used = {n for n in metric_names(expr) if n in labels}
    available = set().union(*(labels[n] for n in used)) | TARGET_LABELS if used else None
    if available is not None:
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", text):
            for label in (g.strip() for g in group.split(",") if g.strip()):
                if label not in available:
                    problems.append(f"grouping by {label!r}, which none of {sorted(used)} has")
    return problems
