#!/usr/bin/env bash
# Checks deploy/prometheus/ and deploy/alertmanager/:
#   - promtool check rules on egressd-rules.yml;
#   - promtool test rules on tests/deploy/prometheus_rules_test.yml, which
#     covers every recording rule's value and every alert firing and staying
#     quiet; every rule of the file must appear in it;
#   - every metric the rules use is in agent/output/metric_catalog.h (or is
#     egressd_unexpected_flows_total, or up);
#   - promtool check config on the example prometheus.yml;
#   - amtool check-config on alertmanager.yml, and amtool config routes test:
#     each alert reaches the receiver meant for it.
# promtool and amtool come from Debian's prometheus and
# prometheus-alertmanager packages; their services are not started (and on a
# systemd machine they are disabled), and the test checks that no Prometheus
# or Alertmanager service (a daemon whose parent is init) appeared.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PROM=$REPO/deploy/prometheus
AM=$REPO/deploy/alertmanager

before=$(pgrep -P 1 -f '^(/usr/bin/)?(prometheus|prometheus-alertmanager|alertmanager)( |$)' | sort | paste -sd' ' - || true)
need_pkgs prometheus prometheus-alertmanager python3 python3-yaml
step "$(promtool --version 2>&1 | head -1); $(amtool --version 2>&1 | head -1)"

step "rules"
check "promtool check rules deploy/prometheus/egressd-rules.yml" promtool check rules "$PROM/egressd-rules.yml"
out=$(cd "$DEPLOY_TESTS" && promtool test rules prometheus_rules_test.yml 2>&1) && rc=0 || rc=$?
if [[ $rc -eq 0 ]]; then
  ok "promtool test rules tests/deploy/prometheus_rules_test.yml: $(grep -c '^  - name:' "$DEPLOY_TESTS/prometheus_rules_test.yml") test groups, $(grep -cE '^ +- eval_time:|^ +- expr:' "$DEPLOY_TESTS/prometheus_rules_test.yml") evaluations"
else
  bad "promtool test rules:"
  printf '%s\n' "$out" | sed 's/^/     | /'
fi
run_report "rule coverage and metric names" python3 - "$PROM/egressd-rules.yml" "$DEPLOY_TESTS/prometheus_rules_test.yml" "$REPO" <<'EOF'
import re, sys, yaml
sys.path.insert(0, sys.argv[3] + "/tests/deploy")
from dashboard_test import catalog_metrics, metric_names  # noqa: E402
rules = yaml.safe_load(open(sys.argv[1]))
tests = yaml.safe_load(open(sys.argv[2]))
known = catalog_metrics(sys.argv[3] + "/agent/output/metric_catalog.h") | {"egressd_unexpected_flows_total", "up"}
recorded = set()
tested_alerts, fired, quiet, tested_exprs = set(), set(), set(), ""
for t in tests["tests"]:
    for a in t.get("alert_rule_test", []):
        tested_alerts.add(a["alertname"])
        (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
    for e in t.get("promql_expr_test", []):
        tested_exprs += " " + e["expr"]
for g in rules["groups"]:
    for r in g["rules"]:
        names = metric_names(r["expr"])
        unknown = {n for n in names if n not in known and n not in recorded}
        name = r.get("alert") or r.get("record")
        print(("FAIL " if unknown else "ok   ") + f"{name}: metrics {', '.join(sorted(names))}"
              + (f" not in agent/output/metric_catalog.h: {sorted(unknown)}" if unknown else ""))
        if "record" in r:
            recorded.add(r["record"])
            print(("ok   " if r["record"] in tested_exprs else "FAIL ") + f"{r['record']}: value tested")
        else:
            a = r["alert"]
            print(("ok   " if a in fired and a in quiet else "FAIL ")
                  + f"{a}: tested firing ({a in fired}) and quiet ({a in quiet})")
EOF

step "scrape configuration"
check "promtool check config deploy/prometheus/prometheus.yml" bash -c "cd '$PROM' && promtool check config prometheus.yml"
check "it scrapes the agent at 127.0.0.1:8789 in job egressd" \
  python3 -c "
import yaml, sys
c = yaml.safe_load(open('$PROM/prometheus.yml'))
job = [j for j in c['scrape_configs'] if j['job_name'] == 'egressd'][0]
sys.exit(0 if ['127.0.0.1:8789'] == [t for s in job['static_configs'] for t in s['targets']] else 1)"

step "Alertmanager"
check "amtool check-config deploy/alertmanager/alertmanager.yml" amtool check-config "$AM/alertmanager.yml"
route() {  # route RECEIVER LABELS...
  local want=$1
  shift
  local got
  got=$(amtool config routes test --config.file="$AM/alertmanager.yml" "$@" 2>/dev/null | tail -1)
  [[ $got == "$want" ]] && ok "$* -> $got" || bad "$* -> $got, want $want"
}
for a in EgressdUnexpectedDestination EgressdNewDestinationForTool EgressdEgressSpike; do
  route egressd-security alertname=$a severity=warning
done
for a in EgressdAgentDown EgressdAgentAbsent EgressdEventsLost EgressdLogWriteFailures EgressdKernelMapFull; do
  route egressd-ops alertname=$a severity=warning
done
check "every alert of egressd-rules.yml is routed explicitly" python3 -c "
import yaml, sys
rules = yaml.safe_load(open('$PROM/egressd-rules.yml'))
am = open('$AM/alertmanager.yml').read()
missing = [r['alert'] for g in rules['groups'] for r in g['rules'] if 'alert' in r and r['alert'] not in am]
print(missing)
sys.exit(1 if missing else 0)"

step "no Prometheus or Alertmanager left running"
after=$(pgrep -P 1 -f '^(/usr/bin/)?(prometheus|prometheus-alertmanager|alertmanager)( |$)' | sort | paste -sd' ' - || true)
if [[ $after == "$before" ]]; then
  ok "running before: ${before:-none}; after: ${after:-none}"
else
  bad "Prometheus or Alertmanager processes appeared: before '${before}', after '${after}'"
fi

finish
