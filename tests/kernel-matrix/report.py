#!/usr/bin/python3
"""Reads the kernel matrix's serial logs (the "@@matrix" markers that init.sh
and probe.sh print) and reports on them.

usage: report.py line LOG [--host]  one line for one kernel; exit 1 if it failed
                                    (--host: probe.sh's output on the host, no VM)
       report.py markdown INDEX OUT  the results document for every kernel

INDEX has one run a line, tab-separated key=value fields written by
matrix.sh: name, kind (vm or host), package, version, log, config, and the
timings fetch_s, initrd_s, vm_s; status is "timeout" when qemu was killed.
"""
import collections
import datetime
import re
import sys

# hooks.bpf.o's programs and the kind of hook each stands for.
HOOK_KINDS = [
    ("fentry_tcp_sendmsg", "fentry"),
    ("fexit_tcp_sendmsg", "fexit"),
    ("kprobe_tcp_sendmsg", "kprobe"),
    ("lsm_socket_connect", "LSM BPF"),
    ("sock_send_length", "tp_btf/sock_send_length"),
    ("tracepoint_sys_exit_sendto", "tracepoint"),
]
CONFIG_KEYS = ["CONFIG_DEBUG_INFO_BTF", "CONFIG_BPF_SYSCALL", "CONFIG_BPF_JIT", "CONFIG_CGROUP_BPF",
               "CONFIG_BPF_LSM", "CONFIG_LSM", "CONFIG_KPROBES", "CONFIG_KPROBE_EVENTS",
               "CONFIG_FUNCTION_TRACER", "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS"]
MARK = re.compile(r"@@matrix (begin|end) (\S+)(?: rc=(-?\d+))? t=([\d.]+)")


class Run:
    """What one serial log (or the host's probe output) says."""

    def __init__(self, text):
        self.sections = {}
        self.rc = {}
        self.t_begin, self.t_end = {}, {}
        self.boot_t = None
        self.kernel = None
        self.done = False
        current = None
        for raw in text.splitlines():
            line = raw.rstrip("\r")
            at = line.find("@@matrix ")
            if at < 0:
                if current:
                    self.sections[current].append(line)
                continue
            line = line[at:]
            if line.startswith("@@matrix boot "):
                self.kernel, t = line.split()[2], line.split()[3]
                self.boot_t = float(t[2:])
            elif line.startswith("@@matrix done"):
                self.done = True
            m = MARK.match(line)
            if not m:
                continue
            kind, name, rc, t = m.groups()
            if kind == "begin":
                current = name
                self.sections[name] = []
                self.t_begin[name] = float(t)
            else:
                current = None
                self.rc[name] = int(rc)
                self.t_end[name] = float(t)

    def section(self, name):
        return self.sections.get(name, [])

    def seconds(self, name):
        if name in self.t_begin and name in self.t_end:
            return self.t_end[name] - self.t_begin[name]
        return None

    # --- egressd check ----------------------------------------------------
    def check_ok(self):
        return self.rc.get("check") == 0

    def check_reason(self):
        for line in self.section("check"):
            if line.startswith("egressd: cannot run here: "):
                reason = line[len("egressd: cannot run here: "):]
                why = self.load_failure()
                return f"{reason}: {why}" if why else reason
        return "" if self.check_ok() else "no output"

    def load_failure(self):
        """Which program the verifier refused in `egressd -v check`, where, and why."""
        tail = self.section("check-verbose")
        prog = next((m.group(1) for line in tail
                     for m in [re.search(r"prog '([^']+)': failed to load", line)] if m), None)
        if not prog:
            return ""
        where = next((m.group(1) for line in reversed(tail)
                      for m in [re.search(r"@ (\S+:\d+)$", line)] if m), None)
        return f"{prog}{f' ({where})' if where else ''}: {short_reason(tail)}"

    # --- egressd-hook-probe -----------------------------------------------
    def programs(self, obj):
        """{program: (section, load, attach, error, tail lines)} of one object."""
        out = collections.OrderedDict()
        last = None
        for line in self.section("hooks"):
            if line.startswith("  | ") and last:
                out[last][4].append(line[4:])
                continue
            words = line.split()
            if len(words) >= 6 and words[0] == "prog" and words[1] == obj:
                name, section = words[2], words[3]
                load = words[4].split("=", 1)[1]
                attach = words[5].split("=", 1)[1]
                error = " ".join(words[6:]) if len(words) > 6 else ""
                out[name] = [section, load, attach, error, []]
                last = name
            elif words[:1] == ["maps"] and len(words) > 1 and words[1] == obj:
                out["(maps)"] = ["-", words[2].split("=", 1)[1], "-", " ".join(words[3:]), []]
                last = "(maps)"
            else:
                last = None
        return out

    def hook(self, program):
        p = self.programs("hooks.bpf.o").get(program) or self.programs("hooks.bpf.o").get("(maps)")
        if not p:
            return "?"
        section, load, attach, error, tail = p
        if load == "ok" and attach == "ok":
            lsm = self.features().get("lsm", "")
            if program == "lsm_socket_connect" and "bpf" not in lsm.split(","):
                return "attaches, but never runs: `bpf` is not among the active LSMs"
            return "yes"
        why = error or ""
        reason = short_reason(tail) or why
        return f"no ({'load' if load != 'ok' else 'attach'}: {reason})" if reason else "no"

    # --- tests ------------------------------------------------------------
    def tests(self, section="tests"):
        """(ran, passed, failed, skipped, {failed test: first message})."""
        lines = self.section(section)
        ran = passed = failed = skipped = 0
        failures = collections.OrderedDict()
        current, message = None, []
        for line in lines:
            m = re.match(r"\[==========\] (\d+) tests? from .* ran", line)
            if m:
                ran = int(m.group(1))
            m = re.match(r"\[  PASSED  \] (\d+) test", line)
            if m:
                passed = int(m.group(1))
            m = re.match(r"\[  SKIPPED \] (\d+) test", line)
            if m:
                skipped = int(m.group(1))
            m = re.match(r"\[  FAILED  \] (\d+) tests?, listed below", line)
            if m:
                failed = int(m.group(1))
            m = re.match(r"\[ RUN      \] (\S+)", line)
            if m:
                current, message = m.group(1), []
                continue
            # A parameterized test's line goes on ", where GetParam() = ...".
            m = re.match(r"\[  FAILED  \] ([^\s,]+)(?:, where .*)? \(", line)
            if m and current == m.group(1):
                failures[current] = failure_message(message)
                current = None
                continue
            if current:
                message.append(line)
        return ran, passed, failed, skipped, failures

    def tests_ok(self):
        return self.rc.get("tests") == 0 or bool(self.flaky())

    def flaky(self):
        """The tests that failed and then passed when run once more."""
        if self.rc.get("tests") == 0 or self.rc.get("retry") != 0:
            return []
        return list(self.tests()[4])

    def bpftool(self):
        """Program and map types from bpftool's probe, in one sentence."""
        progs, maps = [], []
        for line in self.section("bpftool"):
            m = re.match(r"eBPF (program_type|map_type) (\S+) is (NOT )?available", line)
            if not m:
                continue
            kind, name, missing = m.groups()
            if kind == "program_type" and name in ("tracing", "lsm", "kprobe", "cgroup_skb", "cgroup_sock_addr"):
                progs.append(f"{name} {'no' if missing else 'yes'}")
            elif kind == "map_type":
                maps.append(f"{name} {'no' if missing else 'yes'}")
        if not progs and not maps:
            return ""
        return "program types " + ", ".join(progs) + "; map types " + ", ".join(maps)

    def features(self):
        out = {}
        for line in self.section("features"):
            words = line.split(" ", 2)
            if len(words) >= 3 and words[0] == "feature":
                out[words[1]] = words[2]
        return out


def failure_message(lines):
    """The lines of a failed test that say why, without file:line prefixes."""
    keep = []
    for line in lines:
        if not line.strip() or line.startswith("[") or line.startswith("@@matrix"):
            continue
        line = re.sub(r"^\S+\.(cpp|h):\d+: ", "", line)
        if line in ("Failure", "Failed"):
            continue
        keep.append(line.strip())
        if len(keep) == 3:
            break
    return " / ".join(keep)


def short_reason(tail):
    """The most telling line of a libbpf/verifier message tail."""
    for i, line in enumerate(tail):
        # The verifier's verdict is the line before its statistics.
        if line.startswith("processed ") and " insns " in line:
            for prev in reversed(tail[:i]):
                if prev.strip():
                    return prev.strip()
    patterns = [r"failed to find kernel BTF type ID of '[^']+'", r"failed to resolve CO-RE relocation.*",
                r"map '[^']+': failed to create.*", r"extern .* not found.*",
                r"failed to create kprobe .*", r"BPF program load failed: .*", r"failed to attach.*"]
    for pat in patterns:
        for line in tail:
            m = re.search(pat, line)
            if m:
                return m.group(0)
    for line in reversed(tail):
        if line.strip() and "failed to load object" not in line:
            return line.strip()
    return ""


def one_line(run, vm=True):
    name = run.kernel or run.features().get("kernel", "?")
    if vm and run.kernel is None:
        return f"{name}: FAIL: the VM did not reach init (see its serial log)"
    check = "check ok" if run.check_ok() else f"check FAIL ({run.check_reason()})"
    parts = [check]
    if "tests" in run.rc or "tests" in run.sections:
        ran, passed, failed, skipped, failures = run.tests()
        verdict = "ok" if run.tests_ok() else "FAIL"
        # The failing tests by name, so the ctest output of the matrix says which.
        names = list(failures)
        named = (": " + ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                 if names else "")
        flaky = run.flaky()
        if flaky:
            named += "; passed when run again: " + ", ".join(flaky)
        parts.append(f"tests {verdict} ({passed}/{ran} passed, {failed} failed{named}"
                     + (f", {skipped} skipped" if skipped else "") + ")")
    hooks = [f"{kind}={ {'yes': 'yes', 'att': 'inactive'}.get(run.hook(p)[:3], 'no')}" for p, kind in HOOK_KINDS[:5]]
    parts.append("hooks " + " ".join(h.replace("tp_btf/", "").replace("LSM BPF", "lsm") for h in hooks))
    if vm and not run.done:
        parts.append("VM did not finish")
    return f"{name}: " + "; ".join(parts)


def run_failed(run, vm=True):
    if not run.check_ok():
        return True
    if vm and ("tests" in run.sections and not run.tests_ok()):
        return True
    return vm and not run.done


def read_config(path):
    values = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("CONFIG_") and "=" in line:
                    k, v = line.split("=", 1)
                    values[k] = v.strip('"')
                elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                    values[line.split()[1]] = "n"
    except OSError:
        pass
    return values


def fmt_s(v):
    return "-" if v is None else f"{float(v):.0f} s"


def markdown(index_path, out_path):
    entries, meta = [], {}
    with open(index_path) as f:
        for line in f:
            if line.strip():
                fields = dict(field.split("=", 1) for field in line.rstrip("\n").split("\t"))
                if fields.get("kind") == "meta":
                    meta = fields
                else:
                    entries.append(fields)
    md = ["# Kernel matrix results", "",
          f"Recorded by `tests/kernel-matrix/matrix.sh` on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; "
          "do not edit by hand, run the matrix again "
          "(`tests/kernel-matrix/matrix.sh --help`). Debian's kernels boot under qemu (TCG, no KVM); "
          "the host row is the machine that ran the matrix, without the tests.", ""]
    if meta:
        md += [f"egressd: `{meta.get('egressd', '?')}`, built from {meta.get('source', '?')}. "
               f"Tests: `--gtest_filter={meta.get('filter', '')}`. The whole run took {fmt_s(meta.get('total_s'))}, "
               "downloads included (none when the kernels are cached).", ""]
        if meta.get("kernel_config"):
            md += [f"Inside the VMs, egressd check and the tests' agents ran with this `kernel:` section forced "
                   f"(`--kernel-config`): `{meta['kernel_config']}`.", ""]
    md += [
          "| kernel | Debian package | `egressd check` | data path tests | fentry | fexit | kprobe | LSM BPF | "
          "tp_btf/sock_send_length | time |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    details = []
    for e in entries:
        with open(e["log"], errors="replace") as f:
            run = Run(f.read())
        vm = e.get("kind") == "vm"
        name = e["name"]
        kernel = run.kernel or run.features().get("kernel") or name
        if vm and run.kernel is None:
            check = "VM did not reach init"
        else:
            check = "ok" if run.check_ok() else f"FAIL: {run.check_reason()}"
        if not vm:
            tests = "not run here (`scripts/test.sh`)"
        elif "tests" not in run.sections:
            tests = "not run"
        else:
            ran, passed, failed, skipped, _ = run.tests()
            tests = f"{'ok' if run.tests_ok() else 'FAIL'}: {passed}/{ran} passed" + (
                f", {skipped} skipped" if skipped else "")
            if run.flaky():
                tests += f"; {len(run.flaky())} failed and passed when run again: " + ", ".join(
                    f"`{t}`" for t in run.flaky())
            if "tests" not in run.rc:
                tests += " (killed: timeout)"
        if vm and not run.done:
            tests += "; VM did not finish" + (" (timeout)" if e.get("status") == "timeout" else "")
        hooks = []
        for program, _ in HOOK_KINDS[:5]:
            h = run.hook(program)
            hooks.append("yes" if h == "yes" else "inactive" if h.startswith("attaches") else "no")
        package = f"{e.get('package', '-')} {e.get('version', '')}".strip()
        time = fmt_s(e.get("vm_s")) if vm else "-"
        md.append(f"| {kernel} | {package} | {check} | {tests} | " + " | ".join(hooks) + f" | {time} |")
        details += kernel_details(e, run, kernel, vm)
    md += ["", "`yes`: an empty program of that kind loads and attaches (to `tcp_sendmsg`, "
           "`socket_connect`, the `sock_send_length` tracepoint); `inactive`: the LSM program attaches but never "
           "runs, as `bpf` is not among the kernel's active LSMs (`lsm=...,bpf` on the command line turns it on). "
           "Why a kind is missing is in each kernel's section.", ""]
    md += details
    with open(out_path, "w") as f:
        f.write("\n".join(md).rstrip() + "\n")


def kernel_details(e, run, kernel, vm):
    out = [f"## {kernel}", ""]
    if e.get("package"):
        out.append(f"Package `{e['package']}` {e.get('version', '')} from {e.get('release', 'Debian')}.")
    config = read_config(e.get("config", ""))
    if config:
        out.append("Kernel config: " + ", ".join(f"`{k}={config.get(k, 'n')}`" for k in CONFIG_KEYS) + ".")
    feats = run.features()
    if feats:
        out.append("Found in the running kernel: " + "; ".join(
            f"{k}: {v}" for k, v in feats.items() if k != "kernel") + ".")
    python = run.section("python")
    if python:
        works = any("lines checked" in line or "is a required property" in line for line in python)
        out.append("The tests' schema check (`tests/support/validate_events.py`, packed python3 and jsonschema) "
                   + ("runs in the VM." if works else "does not run in the VM: " + " / ".join(python[-3:])))
    digest = run.bpftool()
    if digest:
        out.append("`bpftool feature probe kernel`: " + digest + ".")
    out.append("")
    if vm and run.kernel is None:
        out += ["The VM did not reach init: see the serial log " f"`{e['log']}`.", ""]
        return out
    out += ["### `egressd check`", "", "```"] + run.section("check") + ["```", "",
            f"Exit code {run.rc.get('check', '?')}.", ""]
    verbose = run.section("check-verbose")
    if not run.check_ok() and any("failed to load" in line for line in verbose):
        out += ["Tail of `egressd -v check` (libbpf and the verifier):", "", "```"] + verbose + ["```", ""]

    out += ["### Hook kinds", "", "| hook | program | result |", "| --- | --- | --- |"]
    progs = run.programs("hooks.bpf.o")
    for program, kind in HOOK_KINDS:
        p = progs.get(program)
        section = p[0] if p else "?"
        out.append(f"| {kind} | `{section}` | {run.hook(program)} |")
    out.append("")
    egressd = run.programs("egressd.bpf.o")
    refused = {n: p for n, p in egressd.items() if not (p[1] == "ok" and p[2] in ("ok", "-"))}
    if egressd:
        loaded = [n for n, p in egressd.items() if n != "(maps)" and p[1] == "ok" and p[2] == "ok"]
        out += ["### egressd's programs one by one", "",
                f"Each program of `egressd.bpf.o` loaded and attached alone: {len(loaded)} of "
                f"{len([n for n in egressd if n != '(maps)'])} do. egressd loads only the programs its loader picks "
                "for the kernel (`egressd check` lists them when they load), so a refusal matters only for those."]
        if refused:
            out[-1] += " The others, with the end of what libbpf and the verifier said:"
            out.append("")
            for name, (section, load, attach, error, tail) in refused.items():
                step = "load" if load != "ok" else "attach"
                out += [f"- `{name}` (`{section}`): {step} failed: {short_reason(tail) or error}", "",
                        "  ```"] + ["  " + t for t in tail] + ["  ```", ""]
        out.append("")
    if vm and "tests" in run.sections:
        ran, passed, failed, skipped, failures = run.tests()
        out += ["### Data path tests", "",
                f"`EGRESSD_REQUIRE_BPF=1 egressd_kernel_tests`: {ran} ran, {passed} passed, {failed} failed"
                + (f", {skipped} skipped" if skipped else "") + f" (exit code {run.rc.get('tests', 'none: killed')})."]
        if failures:
            by_message = collections.OrderedDict()
            for test, message in failures.items():
                by_message.setdefault(message, []).append(test)
            out.append("")
            for message, tests in by_message.items():
                shown = ", ".join(f"`{t}`" for t in tests[:6]) + (f" and {len(tests) - 6} more" if len(tests) > 6 else "")
                out.append(f"- {len(tests)} failed with: {message or '(no message)'}: {shown}")
        out.append("")
    if vm:
        phases = [("boot to init", run.boot_t), ("check", run.seconds("check")),
                  ("hook probes", run.seconds("hooks")), ("bpftool", run.seconds("bpftool")),
                  ("tests", run.seconds("tests"))]
        out += ["Time: download " + fmt_s(e.get("fetch_s")) + ", initramfs " + fmt_s(e.get("initrd_s"))
                + ", VM " + fmt_s(e.get("vm_s")) + " (" + ", ".join(f"{n} {fmt_s(v)}" for n, v in phases if v is not None)
                + ").", ""]
    return out


def main():
    if len(sys.argv) in (3, 4) and sys.argv[1] == "line":
        vm = sys.argv[3:] != ["--host"]
        with open(sys.argv[2], errors="replace") as f:
            run = Run(f.read())
        print(one_line(run, vm))
        sys.exit(1 if run_failed(run, vm) else 0)
    if len(sys.argv) == 4 and sys.argv[1] == "markdown":
        markdown(sys.argv[2], sys.argv[3])
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
