#!/usr/bin/env python3
"""Checks what a process did under strace against a systemd unit's sandbox.

usage: syscall_filter.py UNIT STRACE_OUT EXE

From UNIT it reads SystemCallFilter= (in order, as systemd merges them) and
RestrictAddressFamilies=, expands the @groups with `systemd-analyze
syscall-filter`, and checks every system call and socket family that the
process running EXE (and its threads) used after its execve(). It also checks
that no mapping was made writable and executable (MemoryDenyWriteExecute=).
Prints what it checked; exits 1 when something would be refused.
"""
import re
import subprocess
import sys

# systemd allows these whatever the filter says (systemd.exec(5)): execve,
# exit, exit_group, getrlimit, rt_sigreturn, sigreturn, and the calls for
# querying time and sleeping.
ALWAYS_ALLOWED = {"execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn",
                  "clock_gettime", "clock_gettime64", "gettimeofday", "time", "nanosleep",
                  "clock_nanosleep", "clock_nanosleep_time64"}


def unit_values(path, key):
    values = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line.startswith(key + "="):
            values.append(line[len(key) + 1:].strip())
    return values


def syscall_groups():
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True,
                         text=True, check=True).stdout
    groups, current = {}, None
    for line in out.splitlines():
        if re.match(r"^@[\w-]+$", line.strip()) and not line.startswith(" "):
            current = line.strip()
            groups[current] = []
        elif current and line.startswith("    ") and not line.strip().startswith("#"):
            groups[current].append(line.strip())
        elif not line.strip():
            current = None
    return groups


def expand(item, groups, seen=None):
    seen = seen or set()
    if not item.startswith("@"):
        return {item.split(":")[0]}
    if item in seen:
        return set()
    seen.add(item)
    out = set()
    for sub in groups.get(item, []):
        out |= expand(sub, groups, seen)
    return out


def allowed_syscalls(unit, groups):
    allow, mode = None, None
    for value in unit_values(unit, "SystemCallFilter"):
        if value == "":
            allow, mode = None, None
            continue
        deny = value.startswith("~")
        items = value.lstrip("~").split()
        names = set().union(*(expand(i, groups) for i in items)) if items else set()
        if mode is None:
            mode = "deny" if deny else "allow"
            allow = (expand("@known", groups) - names) if deny else (names | expand("@default", groups))
        elif deny:
            allow -= names
        else:
            allow |= names
    return allow


def main():
    unit, trace, exe = sys.argv[1:4]
    groups = syscall_groups()
    allow = allowed_syscalls(unit, groups)
    if allow is None:
        print("FAIL the unit has no SystemCallFilter=")
        return 1
    families = set()
    for v in unit_values(unit, "RestrictAddressFamilies"):
        families |= set(v.split())

    started, pids = False, set()
    used, socket_families, wx = {}, set(), []
    call = re.compile(r"^(\d+)\s+(?:<\.\.\.\s+(\w+)\s+resumed>|(\w+)\()")
    for line in open(trace, encoding="utf-8", errors="replace"):
        m = call.match(line)
        if not m:
            continue
        pid, name = m.group(1), m.group(2) or m.group(3)
        if not started:
            if name == "execve" and f'execve("{exe}"' in line and "= 0" in line:
                started, pids = True, {pid}
            continue
        if pid not in pids:
            # threads and children show up first in a clone/clone3 return value
            pass
        if name in ("clone", "clone3") and pid in pids:
            r = re.search(r"=\s*(\d+)\s*$", line.strip())
            if r:
                pids.add(r.group(1))
        if pid not in pids:
            continue
        used.setdefault(name, 0)
        used[name] += 1
        if name == "socket":
            f = re.search(r"socket\((AF_\w+)", line)
            if f:
                socket_families.add(f.group(1))
        if name in ("mmap", "mprotect", "pkey_mprotect") and "PROT_WRITE" in line and "PROT_EXEC" in line:
            wx.append(line.strip())
    if not started:
        print(f"FAIL no successful execve of {exe} in {trace}")
        return 1

    refused = sorted(s for s in used if s not in allow and s not in ALWAYS_ALLOWED)
    print(f"system calls made by {exe} ({len(pids)} threads): {len(used)} distinct, "
          f"{sum(used.values())} in all: {' '.join(sorted(used))}")
    print(f"SystemCallFilter= allows {len(allow)} system calls")
    ok = True
    if refused:
        ok = False
        print(f"FAIL SystemCallFilter= would refuse: {' '.join(refused)}")
    else:
        print("ok   every system call is allowed by SystemCallFilter=")
    bad_families = sorted(socket_families - families)
    if bad_families:
        ok = False
        print(f"FAIL RestrictAddressFamilies={' '.join(sorted(families))} refuses {' '.join(bad_families)}")
    else:
        print(f"ok   socket families {' '.join(sorted(socket_families)) or '(none)'} are in "
              f"RestrictAddressFamilies={' '.join(sorted(families))}")
    if wx:
        ok = False
        print(f"FAIL writable and executable mappings (MemoryDenyWriteExecute=): {wx[:3]}")
    else:
        print("ok   no writable+executable mapping (MemoryDenyWriteExecute=yes holds)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
