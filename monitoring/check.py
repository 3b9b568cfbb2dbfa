#!/usr/bin/env python3
"""Checks of the monitoring files that promtool cannot do alone (standard library only).

    monitoring/check.py dashboard OUT.yaml   dashboard.json is importable as is; its
                                             PromQL, with Grafana's variables replaced,
                                             written as rules for `promtool check rules`
    monitoring/check.py coverage             every alert in alerts.yaml has a firing and
                                             a silent case in monitoring/tests/
    monitoring/check.py names SCRAPE...      every metric alerts.yaml and dashboard.json
                                             name is in the scrapes (real /metrics output),
                                             and every scraped metric is on the dashboard

scripts/check-monitoring runs the first two; tests/monitoring.rs runs `names` on the
scrapes of a real balancer and nodes.
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALERTS = HERE / "alerts.yaml"
DASHBOARD = HERE / "dashboard.json"
TESTS = HERE / "tests"

# Metrics the rules and the dashboard use whose names and help text are in
# src/metrics.rs but which no code records yet, with where they are to be set. Each
# one must leave this list once it is recorded (`names` fails while both are true).
PENDING: dict = {}

# Values that stand in for Grafana's variables when the expressions are checked.
GRAFANA_BUILTINS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
}

METRIC = re.compile(r"\bdsf_[a-z0-9_]+\b")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def fail(problems):
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    sys.exit(1)


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def substitute(expr, textboxes):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name in textboxes:
            return textboxes[name]
        return ".*"

    return VARIABLE.sub(repl, expr)


def dashboard_exprs(d):
    """(where, expr) for every PromQL expression: panel targets and variable queries."""
    out = []
    for p in walk_panels(d.get("panels", [])):
        for t in p.get("targets", []):
            out.append((f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}", t.get("expr", "")))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q)
        if m:
            q = m.group(1)
        m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q)
        if m:
            q = m.group(1)
        out.append((f"variable {v.get('name')}", q))
    return out


def check_dashboard(out_path):
    problems = []
    try:
        d = json.loads(DASHBOARD.read_text())
    except ValueError as e:
        fail([f"{DASHBOARD}: not JSON: {e}"])
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        problems.append("schemaVersion must be 36 or later")
    for key in ("uid", "title"):
        if not d.get(key):
            problems.append(f"no {key}")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("DS_PROMETHEUS")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no DS_PROMETHEUS data source variable of type prometheus")
    for name in ("service", "node"):
        if name not in variables:
            problems.append(f"no {name} variable")
    for name, v in variables.items():
        regex = v.get("regex") or ""
        if regex:
            try:
                re.compile(regex.strip("/"))
            except re.error as e:
                problems.append(f"variable {name}: regex {regex!r}: {e}")
    textboxes = {n: v.get("query", "") for n, v in variables.items() if v.get("type") in ("textbox", "constant")}

    ids = set()
    cells = {}
    for p in walk_panels(d.get("panels", [])):
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            problems.append(f"{where}: id used twice")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24:
            problems.append(f"{where}: gridPos {g} is not within the 24-column grid")
            continue
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"{where}: overlaps panel {cells[(x, y)]}")
                    break
                cells[(x, y)] = p.get("id")
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            problems.append(f"{where}: data source is not ${{DS_PROMETHEUS}}")
        targets = p.get("targets", [])
        if not targets:
            problems.append(f"{where}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            problems.append(f"{where}: refIds {refs} repeat")
        for t in targets:
            if not t.get("expr"):
                problems.append(f"{where}: target {t.get('refId')} has no expr")

    rules = []
    for i, (where, expr) in enumerate(dashboard_exprs(d)):
        for m in VARIABLE.finditer(expr):
            name = m.group(1) or m.group(2) or m.group(3)
            if name not in variables and name not in GRAFANA_BUILTINS:
                problems.append(f"{where}: unknown variable ${name}")
        concrete = substitute(expr, textboxes)
        rules.append(f"      - record: dashboard_expr_{i}\n        # {where}\n        expr: {json.dumps(concrete)}\n")
    if problems:
        fail(problems)
    Path(out_path).write_text("# Generated by monitoring/check.py from dashboard.json.\ngroups:\n  - name: dashboard\n    rules:\n" + "".join(rules))
    print(f"dashboard.json: {len(ids)} panels, {len(rules)} expressions written to {out_path}")


def alert_names():
    return re.findall(r"^\s*- alert:\s*(\w+)", ALERTS.read_text(), re.M)


def check_coverage():
    firing, silent = set(), set()
    for f in sorted(TESTS.glob("*.yaml")):
        alert = None
        lines = f.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"\s*alertname:\s*(\w+)", line)
            if m:
                alert = m.group(1)
            m = re.match(r"\s*exp_alerts:\s*(\S*)", line)
            if m and alert:
                if m.group(1) == "[]":
                    silent.add(alert)
                elif i + 1 < len(lines) and re.match(r"\s*- exp_labels:", lines[i + 1]):
                    firing.add(alert)
    problems = []
    names = alert_names()
    for a in names:
        if a not in firing:
            problems.append(f"{a}: no test where it fires")
        if a not in silent:
            problems.append(f"{a}: no test where it stays silent")
    if problems:
        fail(problems)
    print(f"alerts.yaml: {len(names)} alerts, each with a firing and a silent test")


def scraped_names(paths):
    names = set()
    for path in paths:
        for line in Path(path).read_text().splitlines():
            m = re.match(r"# (?:HELP|TYPE) (\S+)", line)
            if m:
                names.add(m.group(1))
            elif line and not line.startswith("#"):
                names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def base_name(name, scraped):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in scraped:
            return name[: -len(suffix)]
    return name


def check_names(paths):
    scraped = scraped_names(paths)
    named = {}
    for f in (ALERTS, DASHBOARD):
        for name in METRIC.findall(f.read_text()):
            named.setdefault(name, f.name)
    problems = []
    for name, where in sorted(named.items()):
        if name in PENDING:
            continue
        if name not in scraped:
            problems.append(f"{where} names {name}, which no scrape has")
    for name in sorted(PENDING):
        if name in scraped:
            problems.append(f"{name} is recorded now: remove it from PENDING in monitoring/check.py")
    on_dashboard = {base_name(n, scraped) for n in METRIC.findall(DASHBOARD.read_text())}
    for name in sorted({base_name(n, scraped) for n in scraped if n.startswith("dsf_")}):
        if name not in on_dashboard:
            problems.append(f"{name} is exported but not on dashboard.json")
    if problems:
        fail(problems)
    print(
        f"{len(named)} metric names in alerts.yaml and dashboard.json: "
        f"{len(named) - len(PENDING.keys() & named.keys())} found in the scrapes, "
        f"{len(PENDING.keys() & named.keys())} pending ({', '.join(sorted(PENDING.keys() & named.keys()))})"
    )


def main(argv):
    if len(argv) == 3 and argv[1] == "dashboard":
        check_dashboard(argv[2])
    elif len(argv) == 2 and argv[1] == "coverage":
        check_coverage()
    elif len(argv) >= 3 and argv[1] == "names":
        check_names(argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
