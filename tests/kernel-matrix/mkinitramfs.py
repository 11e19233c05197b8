#!/usr/bin/python3
"""Writes a gzip-compressed cpio (newc) initramfs from a list of entries.

usage: mkinitramfs.py OUT.cpio.gz LIST [LIST...]

Each line of a LIST is one entry (blank lines and lines starting with # are
skipped); DEST is the path inside the image:

  file  DEST SRC [MODE]   the contents of SRC (symlinks followed)
  strip DEST SRC          SRC without debug information (strip --strip-debug)
  elf   DEST SRC          like file, plus every shared library `ldd SRC` lists
  dir   DEST [MODE]
  slink DEST TARGET
  nod   DEST MODE c|b MAJOR MINOR

The image uses Debian's merged /usr: /bin, /sbin, /lib and /lib64 are
symlinks into /usr, and a DEST under them is stored under /usr. Parent
directories are added as needed. Owner is root, timestamps are the sources'
(Python's .pyc files check them).
"""
import gzip
import os
import re
import stat
import subprocess
import sys
import tempfile

MERGED = ("bin", "sbin", "lib", "lib64")


def image_path(dest):
    parts = os.path.normpath(dest).lstrip("/").split("/")
    if parts[0] in MERGED:
        parts.insert(0, "usr")
    return "/".join(parts)


class Image:
    def __init__(self):
        self.entries = {}  # path -> (kind, mode, data source or target, rdev, mtime)
        for top in MERGED:
            self.entries[top] = ("slink", 0o777, f"usr/{top}", (0, 0), 0)

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in self.entries:
                self.entries[p] = ("dir", 0o755, None, (0, 0), 0)

    def add(self, path, kind, mode, src=None, rdev=(0, 0), mtime=0):
        path = image_path(path)
        old = self.entries.get(path)
        if old is not None:
            if old[0] == "dir" and kind == "dir":
                return
            if old[0] == kind and old[2] == src:
                return
            if old[0] == "file" and kind == "file" and os.path.realpath(old[2]) == os.path.realpath(src):
                return
            sys.exit(f"mkinitramfs: {path} given twice ({old[2]} and {src})")
        self._parents(path)
        self.entries[path] = (kind, mode, src, rdev, mtime)

    def add_file(self, dest, src, mode=None):
        real = os.path.realpath(src)
        st = os.stat(real)
        self.add(dest, "file", mode if mode is not None else stat.S_IMODE(st.st_mode), real,
                 mtime=int(st.st_mtime))

    def write(self, out):
        with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as z:
            for ino, path in enumerate(sorted(self.entries), 1):
                kind, mode, src, rdev, mtime = self.entries[path]
                if kind == "file":
                    with open(src, "rb") as f:
                        data = f.read()
                    ftype = stat.S_IFREG
                elif kind == "slink":
                    data = src.encode()
                    ftype = stat.S_IFLNK
                elif kind == "dir":
                    data = b""
                    ftype = stat.S_IFDIR
                else:
                    data = b""
                    ftype = stat.S_IFCHR if kind == "chr" else stat.S_IFBLK
                write_entry(z, ino, path, ftype | mode, mtime, data, rdev)
            write_entry(z, 0, "TRAILER!!!", 0, 0, b"", (0, 0))


def write_entry(z, ino, name, mode, mtime, data, rdev):
    name_b = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = (ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0)
    z.write(b"070701" + b"".join(b"%08X" % f for f in fields))
    z.write(name_b + b"\0" * (-(110 + len(name_b)) % 4))
    z.write(data + b"\0" * (-len(data) % 4))


LDD_LINE = re.compile(r"^\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$")


def shared_libraries(src):
    out = subprocess.run(["ldd", src], capture_output=True, text=True)
    if "not a dynamic executable" in out.stdout + out.stderr or "statically linked" in out.stdout:
        return []
    if out.returncode != 0:
        sys.exit(f"mkinitramfs: ldd {src} failed: {out.stderr.strip()}")
    libs = []
    for line in out.stdout.splitlines():
        if "not found" in line:
            sys.exit(f"mkinitramfs: {src}: {line.strip()}")
        m = LDD_LINE.match(line)
        if m:
            libs.append(m.group(1))
    return libs


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    image = Image()
    tmp = tempfile.TemporaryDirectory(prefix="egressd-initramfs-")
    for list_path in sys.argv[2:]:
        with open(list_path) as f:
            for n, line in enumerate(f, 1):
                words = line.split()
                if not words or words[0].startswith("#"):
                    continue
                kind, args = words[0], words[1:]
                try:
                    if kind == "file":
                        image.add_file(args[0], args[1], int(args[2], 8) if len(args) > 2 else None)
                    elif kind == "strip":
                        stripped = os.path.join(tmp.name, f"{n}-{os.path.basename(args[1])}")
                        subprocess.run(["strip", "--strip-debug", "-o", stripped, args[1]], check=True)
                        image.add_file(args[0], stripped)
                        for lib in shared_libraries(args[1]):
                            image.add_file(lib, lib)
                    elif kind == "elf":
                        image.add_file(args[0], args[1])
                        for lib in shared_libraries(args[1]):
                            image.add_file(lib, lib)
                    elif kind == "dir":
                        image.add(args[0], "dir", int(args[1], 8) if len(args) > 1 else 0o755)
                    elif kind == "slink":
                        image.add(args[0], "slink", 0o777, args[1])
                    elif kind == "nod":
                        image.add(args[0], "chr" if args[2] == "c" else "blk", int(args[1], 8),
                                  rdev=(int(args[3]), int(args[4])))
                    else:
                        sys.exit(f"{list_path}:{n}: unknown entry kind {kind}")
                except (IndexError, ValueError):
                    sys.exit(f"{list_path}:{n}: malformed line: {line.strip()}")
                except OSError as e:
                    sys.exit(f"{list_path}:{n}: {e}")
    image.write(sys.argv[1])


if __name__ == "__main__":
    main()
