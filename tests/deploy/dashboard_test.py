#!/usr/bin/env python3
"""Structure checks for deploy/grafana/egressd-dashboard.json (stdlib only).

Checks:
  - the file is JSON with the stable uid "egressd-overview";
  - a template variable "datasource" of type datasource for Prometheus exists;
  - every panel (rows' nested panels included) and every target uses that
    variable as its data source, and panel ids are unique;
  - every target has a non-empty expr, and every metric name in an expr or a
    template variable query is in agent/output/metric_catalog.h, or is
    egressd_unexpected_flows_total or up;
  - the panels the deployment issue asks for are there;
  - when promtool is installed, every expr parses as PromQL (Grafana's
    $variables replaced by sample values).

Usage: dashboard_test.py [REPO_ROOT]. Exits 1 on the first failed check group.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "egressd-dashboard.json")
CATALOG = os.path.join(ROOT, "agent", "output", "metric_catalog.h")
EXTRA_METRICS = {"egressd_unexpected_flows_total", "up"}
DS_REFS = {"${datasource}", "$datasource"}

PROMQL_FUNCTIONS_AND_KEYWORDS = {
    # aggregation operators and their modifiers
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "atan2", "inf", "nan",
    # Grafana's label_values() in variable queries
    "label_values", "query_result", "metrics", "label_names",
}

failures = []


def section(done, message):
    """Prints ok for a group of checks that added no failure since `done`."""
    if len(failures) == done:
        print(f"ok   {message}")
    else:
        print(f"FAIL {message}")
        for f in failures[done:]:
            print(f"     | {f}")
    return len(failures)


def check(cond, message):
    if not cond:
        failures.append(message)
    return cond


def catalog_metrics(path):
    text = open(path, encoding="utf-8").read()
    names = set(re.findall(r'MetricSpec\{\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', text))
    if not names:
        sys.exit(f"FAIL no MetricSpec names found in {path}")
    return names


def metric_names(expr):
    """Metric names in a PromQL expression: identifiers that are not functions,
    keywords, label names, durations or Grafana variables. For Grafana's
    label_values(QUERY, LABEL), those of QUERY."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr, re.S)
    if m:
        expr = m.group(1)
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", "{}", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "[]", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1()", s)  # label lists
    s = re.sub(r"\$\{?\w+\}?", "", s)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)", s):
        word = m.group(1)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if word in PROMQL_FUNCTIONS_AND_KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def main():
    catalog = catalog_metrics(CATALOG)
    known = catalog | EXTRA_METRICS
    print(f"dashboard: {os.path.relpath(DASHBOARD, ROOT)}")
    print(f"metric names allowed: {len(catalog)} from agent/output/metric_catalog.h"
          + "".join(f", {m}" for m in sorted(EXTRA_METRICS - catalog)))
    try:
        dash = json.load(open(DASHBOARD, encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"FAIL cannot read the dashboard: {e}")
        return 1

    done = 0
    # uid and data source variable
    check(dash.get("uid") == "egressd-overview", f"uid is {dash.get('uid')!r}, want 'egressd-overview'")
    variables = dash.get("templating", {}).get("list", [])
    ds_vars = [v for v in variables if v.get("name") == "datasource"]
    check(len(ds_vars) == 1, "there must be exactly one template variable named 'datasource'")
    if ds_vars:
        check(ds_vars[0].get("type") == "datasource", "variable 'datasource' must be of type 'datasource'")
        check(ds_vars[0].get("query") == "prometheus", "variable 'datasource' must select Prometheus data sources")
    done = section(done, "uid egressd-overview and a ${datasource} variable of type datasource (prometheus)")

    # panels, data sources, targets
    panels = list(walk_panels(dash.get("panels", [])))
    ids = [p.get("id") for p in panels]
    check(len(ids) == len(set(ids)) and None not in ids, f"panel ids must be present and unique: {ids}")
    exprs = []
    n_targets = 0
    for p in panels:
        title = p.get("title", f"panel {p.get('id')}")
        check("gridPos" in p, f"{title}: no gridPos")
        if p.get("type") == "row":
            continue
        ds = p.get("datasource")
        check(isinstance(ds, dict) and ds.get("uid") in DS_REFS and ds.get("type") == "prometheus",
              f"{title}: panel datasource {ds!r} does not use the ${{datasource}} variable")
        targets = p.get("targets", [])
        check(targets, f"{title}: no targets")
        for t in targets:
            n_targets += 1
            tds = t.get("datasource")
            check(isinstance(tds, dict) and tds.get("uid") in DS_REFS,
                  f"{title}/{t.get('refId')}: target datasource {tds!r} does not use the ${{datasource}} variable")
            expr = (t.get("expr") or "").strip()
            if check(expr, f"{title}/{t.get('refId')}: empty expr"):
                exprs.append((f"{title}/{t.get('refId')}", expr))
    for v in variables:
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            check(q.strip(), f"variable {v.get('name')}: empty query")
            check((v.get("datasource") or {}).get("uid") in DS_REFS,
                  f"variable {v.get('name')}: datasource does not use the ${{datasource}} variable")
            exprs.append((f"variable {v.get('name')}", q))
    done = section(done, f"{len(panels)} panels, {n_targets} targets: every datasource is ${{datasource}}, ids unique")

    used = set()
    for where, expr in exprs:
        names = metric_names(expr)
        check(names, f"{where}: no metric name found in {expr!r}")
        for n in sorted(names - known):
            failures.append(f"{where}: metric {n!r} is not in agent/output/metric_catalog.h: {expr}")
        used |= names
    done = section(done, f"every expr is non-empty and uses known metrics: {', '.join(sorted(used))}")

    # the panels the deployment asks for
    titles = " | ".join(p.get("title", "") for p in panels).lower()
    for want in ("egress bytes/s per tool", "top destinations", "connections by result",
                 "events lost", "open flows", "processes", "log write failures"):
        check(want in titles, f"no panel titled like {want!r}")
    for metric in ("egressd_sent_bytes_total", "egressd_connections_total", "egressd_events_lost_total",
                   "egressd_open_flows", "egressd_processes", "egressd_log_write_failures_total"):
        check(metric in used, f"no panel queries {metric}")
    done = section(done, "panels: egress per tool, top destinations, connections by result, agent health")

    # PromQL syntax, through promtool's rule parser
    promtool = shutil.which("promtool")
    if promtool:
        rules = {"groups": [{"name": "dashboard", "rules": []}]}
        for i, (where, expr) in enumerate(exprs):
            if where.startswith("variable"):
                m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr, re.S)
                if not m:
                    continue
                expr = m.group(1)
            concrete = (expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
                        .replace("$job", ".*").replace("$instance", ".*").replace("$tool", ".*"))
            rules["groups"][0]["rules"].append({"record": f"dashboard_expr_{i}", "expr": concrete})
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            json.dump(rules, f)  # JSON is YAML
        try:
            r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
        finally:
            os.unlink(f.name)
        check(r.returncode == 0, f"promtool cannot parse the dashboard's exprs:\n{r.stdout}{r.stderr}")
        done = section(done, f"{len(rules['groups'][0]['rules'])} exprs parse as PromQL (promtool check rules)")
    else:
        print("skip PromQL syntax: promtool is not installed (apt-get install prometheus)")

    if failures:
        print(f"dashboard_test: {len(failures)} failed")
        return 1
    print("dashboard_test: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
