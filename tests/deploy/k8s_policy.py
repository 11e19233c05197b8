#!/usr/bin/env python3
"""What deploy/kubernetes/ must say, beyond schema validity.

usage: k8s_policy.py DOCS.json

DOCS.json is the manifests as kubernetes_test.sh converts them. Prints one
line per check; exits 1 if any fails.
"""
import json
import sys

import yaml

failures = 0


def check(cond, what):
    global failures
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures += 1
    return cond


def main():
    docs = [d["doc"] for d in json.load(open(sys.argv[1]))]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    check(sorted(by_kind) == ["ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"],
          f"one Namespace, ServiceAccount, ConfigMap and DaemonSet (found {sorted(by_kind)})")
    ns = by_kind["Namespace"][0]["metadata"]["name"]
    check(all(d["metadata"].get("namespace") == ns for d in docs if d["kind"] != "Namespace"),
          f"every object is in namespace {ns}")

    ds = by_kind["DaemonSet"][0]
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c.get("securityContext", {})
    caps = sc.get("capabilities", {})

    check(pod.get("serviceAccountName") == by_kind["ServiceAccount"][0]["metadata"]["name"],
          "the pod uses the ServiceAccount defined here")
    check(pod.get("automountServiceAccountToken") is False,
          "no service account token in the pod (egressd does not use the API)")
    check(pod.get("hostPID") is True, "hostPID: true (host pids, /proc/PID/cmdline of host processes)")
    check(not pod.get("hostNetwork"), "no hostNetwork: metrics stay on the pod's own address")
    check(sc.get("privileged") is not True and all(
        (x.get("securityContext") or {}).get("privileged") is not True for x in pod["containers"]),
        "no container is privileged")
    check(caps.get("drop") == ["ALL"], "capabilities: drop ALL")
    check(sorted(caps.get("add", [])) == ["BPF", "NET_ADMIN", "PERFMON"],
          f"capabilities: add exactly BPF, PERFMON, NET_ADMIN (found {caps.get('add')})")
    check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation: false")
    check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem: true")
    check(sc.get("runAsUser") == 0, "runs as uid 0 (Kubernetes gives added capabilities to root only)")
    check((sc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost"),
          "a seccomp profile is set")

    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}

    def host_path(mount_path):
        m = mounts.get(mount_path)
        v = volumes.get(m["name"]) if m else None
        return (v or {}).get("hostPath", {}).get("path"), bool(m and m.get("readOnly"))

    check(host_path("/sys/fs/cgroup") == ("/sys/fs/cgroup", True),
          "host /sys/fs/cgroup mounted read-only at /sys/fs/cgroup, over the container's own cgroup mount")
    check(host_path("/sys/kernel/btf") == ("/sys/kernel/btf", True), "host /sys/kernel/btf mounted read-only")
    check("/proc" not in mounts, "no mount over /proc (hostPID gives the host's process tree)")

    res = c.get("resources", {})
    check(all(k in res.get("requests", {}) for k in ("cpu", "memory")) and "memory" in res.get("limits", {}),
          f"resources: requests cpu and memory, limit memory ({res})")
    check(any(t.get("operator") == "Exists" and "key" not in t for t in pod.get("tolerations", [])),
          "tolerates every taint: one agent per node")

    # Metrics: config, port, annotations and probes agree.
    cm = by_kind["ConfigMap"][0]
    config_name = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
    check(config_name == cm["metadata"]["name"], "the pod mounts the ConfigMap defined here")
    cfg = yaml.safe_load(cm["data"]["egressd.yaml"])
    address = cfg["metrics"]["address"]
    host, _, port = address.rpartition(":")
    check(host == "0.0.0.0", f"metrics.address listens on the pod's address ({address})")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("metrics") == int(port), f"containerPort 'metrics' is the configured port {port}")
    ann = ds["spec"]["template"]["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == port
          and ann.get("prometheus.io/path") == "/metrics",
          f"prometheus.io/scrape, port {port} and path /metrics annotations")
    for probe in ("readinessProbe", "livenessProbe"):
        p = c.get(probe, {}).get("httpGet", {})
        check(p.get("path") == "/healthz" and p.get("port") in ("metrics", int(port)),
              f"{probe}: GET /healthz on the metrics port")
    check(c.get("args", [])[:1] == ["run"] and "/etc/egressd/egressd.yaml" in c.get("args", []),
          "the container runs `egressd run --config /etc/egressd/egressd.yaml`")
    check(mounts.get("/etc/egressd", {}).get("readOnly") is True, "the configuration is mounted read-only")
    check(cfg.get("log", {}).get("file") == "-", "events go to stdout (read-only root file system)")

    print(f"k8s_policy: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
