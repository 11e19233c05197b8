#!/usr/bin/python3
"""Lists, as mkinitramfs.py entries, the files Python needs to run one script.

usage: /usr/bin/python3 python_files.py SCRIPT [ARG...]

Runs SCRIPT with its arguments in this interpreter, then prints an entry for
every module it imported: the source file and its cached .pyc, extension
modules as `elf` (their libraries come along), and whole packages from
dist-packages (jsonschema reads its meta-schemas from the package directory).
The VM image then holds a Python just big enough for the script, not the
whole standard library.
"""
import atexit
import importlib.util
import os
import runpy
import sys
import sysconfig

DIST = ("/usr/lib/python3/dist-packages/",)


def entries():
    files, elves = set(), set()
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if not path or not os.path.isabs(path) or not os.path.exists(path):
            continue
        dist = next((d for d in DIST if path.startswith(d)), None)
        if dist:
            top = path[len(dist):].split("/")[0]
            root = os.path.join(dist, top)
            if os.path.isdir(root):
                for dirpath, _, names in os.walk(root):
                    for name in names:
                        full = os.path.join(dirpath, name)
                        (elves if name.endswith(".so") else files).add(full)
                name = top.split(".")[0]
                for meta in os.listdir(dist):
                    if meta.split("-")[0].lower() == name.lower() and meta.endswith((".dist-info", ".egg-info")):
                        for dirpath, _, names in os.walk(os.path.join(dist, meta)):
                            files.update(os.path.join(dirpath, n) for n in names)
                continue
        if path.endswith(".so"):
            elves.add(path)
            continue
        files.add(path)
        if path.endswith(".py"):
            cached = importlib.util.cache_from_source(path)
            if os.path.exists(cached):
                files.add(cached)
    lines = [f"elf {sys.executable} {sys.executable}"]
    # The landmarks Python finds its prefix and exec prefix by.
    lines.append(f"dir {sysconfig.get_paths()['platstdlib']}/lib-dynload")
    lines += [f"file {p} {p}" for p in sorted(files)]
    lines += [f"elf {p} {p}" for p in sorted(elves)]
    return lines


def report():
    with open(os.environ["PYTHON_FILES_OUT"], "w") as out:
        out.write("\n".join(entries()) + "\n")


def main():
    if len(sys.argv) < 2 or "PYTHON_FILES_OUT" not in os.environ:
        sys.exit("usage: PYTHON_FILES_OUT=LIST /usr/bin/python3 python_files.py SCRIPT [ARG...]")
    atexit.register(report)
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
