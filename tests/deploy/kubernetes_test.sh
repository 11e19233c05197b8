#!/usr/bin/env bash
# Checks deploy/kubernetes/*.yaml:
#   1. every object validates against the Kubernetes OpenAPI schemas, offline,
#      with no unknown field (k8s_validate.mjs; the schemas come from the npm
#      package kubernetes-models, installed into the build directory), and the
#      validator itself rejects a typo, a wrong type and a missing field;
#   2. the DaemonSet says what egressd needs and nothing more (k8s_policy.py);
#   3. egressd accepts the ConfigMap's egressd.yaml;
#   4. as root on a kernel egressd runs on: a pod is emulated (its own cgroup
#      and cgroup namespace, the runtime's cgroup2 mount rooted at the pod's
#      cgroup, uid 0 with the DaemonSet's capabilities only) and egressd, run
#      with the ConfigMap, counts a host process's traffic when the host's
#      cgroup2 root is mounted over that mount read-only, as the DaemonSet
#      does; without that mount it refuses to start (exit 1, naming the fix)
#      rather than watch the pod alone. /healthz answers 200.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
K8S=$REPO/deploy/kubernetes
MODELS_VERSION=4.5.1  # kubernetes-models (engines: node >= 14)
PY=/usr/bin/python3

need_pkgs python3 python3-yaml ca-certificates
command -v node >/dev/null && command -v npm >/dev/null || need_pkgs nodejs npm
work=$(mktemp -d)
on_exit "rm -rf $work"

step "the Kubernetes schemas: npm kubernetes-models@$MODELS_VERSION"
models=$BUILD_DIR/deploy-test-cache/kubernetes-models-$MODELS_VERSION
if [[ ! -f $models/node_modules/kubernetes-models/package.json ]]; then
  mkdir -p "$models"
  npm install --prefix "$models" --no-audit --no-fund --no-package-lock --loglevel=error \
    "kubernetes-models@$MODELS_VERSION" 2>&1 | grep -v '^npm warn Unknown user config' || true
fi
if [[ -f $models/node_modules/kubernetes-models/package.json ]]; then
  ok "kubernetes-models $(node -p "require('$models/node_modules/kubernetes-models/package.json').version") in $models"
else
  bad "npm could not install kubernetes-models@$MODELS_VERSION"
  finish
  exit 1
fi

"$PY" - "$K8S" >"$work/docs.json" <<'EOF'
import glob, json, os, sys, yaml
out = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.yaml"))):
    for d in yaml.safe_load_all(open(f)):
        if d is not None:
            out.append({"file": os.path.relpath(f, os.path.dirname(os.path.dirname(sys.argv[1]))), "doc": d})
print(json.dumps(out))
EOF
step "schema validation of $(ls "$K8S"/*.yaml | wc -l) files, $("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/docs.json") objects"
run_report "k8s_validate.mjs" node "$DEPLOY_TESTS/k8s_validate.mjs" "$models/node_modules" "$work/docs.json"

step "the validator rejects broken manifests"
broken() {  # broken NAME PYTHON-STATEMENT-ON-ds: the DaemonSet changed so, must fail validation
  "$PY" - "$work/docs.json" "$2" >"$work/broken.json" <<'EOF'
import json, sys
docs = json.load(open(sys.argv[1]))
ds = next(d["doc"] for d in docs if d["doc"]["kind"] == "DaemonSet")
c = ds["spec"]["template"]["spec"]["containers"][0]
exec(sys.argv[2])
print(json.dumps([d for d in docs if d["doc"]["kind"] == "DaemonSet"]))
EOF
  if node "$DEPLOY_TESTS/k8s_validate.mjs" "$models/node_modules" "$work/broken.json" >"$work/broken.out"; then
    bad "$1: accepted"
  else
    ok "$1: $(grep -m1 '|' "$work/broken.out" | sed 's/^ *| //')"
  fi
}
broken "a misspelt field" 'c["securityContext"]["readOnlyRootFileSystem"] = True'
broken "a field at the wrong level" 'ds["spec"]["template"]["spec"]["capabilities"] = {"add": ["BPF"]}'
broken "a wrong type" 'c["ports"][0]["containerPort"] = "8789"'
broken "a missing required field" 'del ds["spec"]["selector"]'
broken "a bad enum value" 'c["imagePullPolicy"] = "Sometimes"'

step "what the DaemonSet says (k8s_policy.py)"
run_report "k8s_policy.py" "$PY" "$DEPLOY_TESTS/k8s_policy.py" "$work/docs.json"

step "egressd accepts the ConfigMap's egressd.yaml"
"$PY" - "$work/docs.json" >"$work/egressd.yaml" <<'EOF'
import json, sys
docs = json.load(open(sys.argv[1]))
print(next(d["doc"] for d in docs if d["doc"]["kind"] == "ConfigMap")["data"]["egressd.yaml"])
EOF
chmod 644 "$work/egressd.yaml"
chmod 755 "$work"
EGRESSD=$(egressd_bin)
# Without privileges `egressd run` stops at the privilege check (exit 1), after
# the configuration was read; a configuration error would be exit 2.
rc=0
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
  "$EGRESSD" run --config "$work/egressd.yaml" >/dev/null 2>"$work/config.err" || rc=$?
if [[ $rc -eq 1 ]] && grep -q 'privileges' "$work/config.err"; then
  ok "configuration accepted (exit 1 at the privilege check, not 2)"
else
  bad "egressd run --config <ConfigMap's egressd.yaml>: exit $rc: $(cat "$work/config.err")"
fi

step "an emulated pod: cgroup namespace, the DaemonSet's capabilities and mounts"
emulate=1
if [[ $EUID -ne 0 ]]; then
  echo "skip: needs root"
  emulate=
elif ! "$EGRESSD" check --no-load >/dev/null 2>&1; then
  reason=$("$EGRESSD" check --no-load 2>&1 | tail -1)
  [[ ${EGRESSD_REQUIRE_BPF:-} == 1 ]] && bad "egressd cannot run here: $reason"
  echo "skip: egressd cannot run here: $reason"
  emulate=
fi
if [[ -n $emulate ]]; then
  need_pkgs curl util-linux
  cgroup2=$("$EGRESSD" check --no-load | sed -n 's/.*cgroup v2 *mounted at //p' | head -1)
  caps=$("$PY" - "$work/docs.json" <<'EOF'
import json, sys
docs = json.load(open(sys.argv[1]))
ds = next(d["doc"] for d in docs if d["doc"]["kind"] == "DaemonSet")
add = ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
print(",".join("+" + c.lower() for c in add))
EOF
)
  cp "$DEPLOY_TESTS/sandbox_traffic.py" "$work/traffic.py"
  "$PY" "$work/traffic.py" sink "$work/port" &
  sink=$!
  on_exit "kill $sink 2>/dev/null; wait $sink 2>/dev/null"
  for _ in $(seq 100); do [[ -s $work/port ]] && break; sleep 0.05; done
  port=$(cat "$work/port")

  # pod OVERLAY: egressd in a pod cgroup and cgroup namespace; the runtime's
  # cgroup2 mount at $cgroup2 shows the pod's cgroup; with OVERLAY=1 the
  # host's cgroup2 root is bind-mounted over it read-only (the hostPath).
  pod() {
    local overlay=$1 dir=$work/pod$1 cg=$cgroup2/egressd-deploy-test-pod$1-$$
    mkdir -p "$dir"
    mkdir "$cg"
    on_exit "rmdir $cg 2>/dev/null"
    (
      echo $BASHPID >"$cg/cgroup.procs"
      exec unshare --cgroup --mount --propagation private bash -c '
        set -e
        cgroup2=$1 overlay=$2; shift 2
        host=$(mktemp -d)
        mount --bind "$cgroup2" "$host"
        umount "$cgroup2"
        mount -t cgroup2 -o ro none "$cgroup2"
        if [ "$overlay" = 1 ]; then
          mount --bind "$host" "$cgroup2"
          mount -o remount,bind,ro "$cgroup2"
        fi
        umount "$host"; rmdir "$host"
        exec "$@"' pod "$cgroup2" "$overlay" \
        setpriv --no-new-privs --inh-caps=-all,$caps --ambient-caps=-all,$caps --bounding-set=-all,$caps \
        "$EGRESSD" run --config "$work/egressd.yaml" --metrics-addr 127.0.0.1:0 --log-file "$dir/events.json" \
          --instance "k8s-test-$$"
    ) 2>"$dir/stderr" &
    local agent=$!
    on_exit "kill -TERM $agent 2>/dev/null; sleep 0.5; rm -rf /sys/fs/bpf/egressd/k8s-test-$$"
    for _ in $(seq 300); do
      grep -q agent-started "$dir/events.json" 2>/dev/null && break
      kill -0 "$agent" 2>/dev/null || break
      sleep 0.1
    done
    if [[ $overlay == 0 ]]; then
      # Only the pod's own mount in sight: egressd refuses it, naming the fix,
      # rather than start and watch the pod alone.
      local rc=0
      wait "$agent" || rc=$?
      rmdir "$cg" 2>/dev/null || true
      if [[ $rc -eq 1 ]] && grep -q "is not the host's root cgroup" "$dir/stderr" &&
        ! grep -q agent-started "$dir/events.json" 2>/dev/null; then
        ok "without it, egressd refuses to watch only the pod's cgroup (exit 1): $(head -c 160 "$dir/stderr")..."
      else
        bad "without the host cgroup2 mount: exit code $rc, stderr: $(cat "$dir/stderr")"
      fi
      return
    fi
    if ! grep -q agent-started "$dir/events.json" 2>/dev/null; then
      bad "pod $overlay: egressd did not start: $(cat "$dir/stderr")"
      return
    fi
    local addr
    addr=$(sed -n 's/.*"metrics":{"address":"\([^"]*\)".*/\1/p' "$dir/events.json" | head -1)
    # A host process, outside the pod's cgroup.
    "$PY" "$work/traffic.py" client "$port" 300 - 33 "host-client-$overlay-$$"
    sleep 2.5
    local healthz
    healthz=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/healthz" || true)
    kill -TERM "$agent"
    local rc=0
    wait "$agent" || rc=$?
    rmdir "$cg" 2>/dev/null || true
    local bytes
    bytes=$("$PY" - "$dir/events.json" "$port" <<'EOF'
import json, sys
n = 0
for line in open(sys.argv[1]):
    j = json.loads(line)
    if j["event"]["action"] == "flow-ended" and j.get("destination", {}).get("port") == int(sys.argv[2]):
        n += j["source"]["bytes"]
print(n)
EOF
)
    local attached
    attached=$(grep -o 'cgroup/connect4 ([^)]*)' "$dir/events.json" | head -1)
    if [[ $overlay == 1 ]]; then
      [[ $bytes == 333 ]] && ok "with the host cgroup2 mounted over the pod's: a host process's 333 bytes counted ($attached)" ||
        bad "with the host cgroup2 mounted over the pod's: $bytes bytes counted, want 333"
      [[ $healthz == 200 ]] && ok "GET /healthz: 200 (the DaemonSet's probes)" || bad "GET /healthz: $healthz"
      [[ $rc -eq 0 ]] && ok "SIGTERM: exit code 0" || bad "SIGTERM: exit code $rc"
    fi
  }
  pod 1
  pod 0
fi

finish
