#!/usr/bin/env python3
"""Checks the alert rules and the Grafana dashboard with Prometheus' own promtool.

  * the alert rule file is valid (`promtool check rules`);
  * every alert behaves as its unit tests say (`promtool test rules deploy/monitoring/alerts-test.yaml`);
  * every dashboard query is valid PromQL: each panel target becomes a recording rule in a temporary rule
    file that promtool checks, so a syntax error names its panel;
  * every panel has an id unique in the dashboard, a grid position, and queries the dashboard's
    `${datasource}` variable.

That the queried metrics exist is placement-webhook/tests/monitoring.rs' job. Grafana itself does not run
here; the dashboard's look is not checked.

Usage: check_monitoring.py REPO_ROOT
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml


def promtool(*args):
    run = subprocess.run(["promtool", *args], capture_output=True, text=True)
    return run.returncode, (run.stdout + run.stderr).strip()


def panels(dashboard):
    for p in dashboard["panels"]:
        yield p
        yield from p.get("panels", [])  # collapsed rows keep their panels inside


# Grafana's built-in interval variables, replaced by what they would be at a typical zoom.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    rules = os.path.join(root, "deploy/helm/placement/files/alerts.yaml")
    tests = os.path.join(root, "deploy/monitoring/alerts-test.yaml")
    dashboard_path = os.path.join(root, "deploy/monitoring/grafana-dashboard.json")
    problems = []

    for args in (["check", "rules", rules], ["test", "rules", tests]):
        code, out = promtool(*args)
        if code != 0:
            problems.append(f"promtool {' '.join(args[:2])} {os.path.relpath(args[2], root)}:\n{out}")
        else:
            print(f"ok: promtool {' '.join(args[:2])} {os.path.relpath(args[2], root)}")

    with open(dashboard_path) as f:
        dashboard = json.load(f)
    recording, ids = [], {}
    for p in panels(dashboard):
        title = p.get("title", "(untitled)")
        ids.setdefault(p.get("id"), []).append(title)
        if "gridPos" not in p:
            problems.append(f"dashboard panel {title!r}: no gridPos")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"dashboard panel {title!r}: its datasource is not ${{datasource}}")
        if not p.get("targets"):
            problems.append(f"dashboard panel {title!r}: no query")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            if "$" in expr:
                problems.append(f"dashboard panel {title!r}: unknown variable in {expr!r}")
                continue
            name = "dashboard:" + re.sub(r"[^a-zA-Z0-9_]+", "_", title).strip("_").lower() + f":{t.get('refId', 'A')}"
            recording.append({"record": name, "expr": expr})
    for panel_id, titles in ids.items():
        if panel_id is None or len(titles) > 1:
            problems.append(f"dashboard panels {titles}: id {panel_id!r} is missing or not unique")

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}, f)
        f.flush()
        code, out = promtool("check", "rules", f.name)
        if code != 0:
            problems.append(f"dashboard queries are not valid PromQL (rule names are dashboard:<panel>:<refId>):\n{out}")
        else:
            print(f"ok: {len(recording)} dashboard queries are valid PromQL")

    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
