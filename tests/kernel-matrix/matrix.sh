#!/usr/bin/env bash
# Kernel test matrix: boots Debian's own cloud kernels under qemu (TCG; no
# KVM needed) and runs `egressd check`, hook probes and the data path kernel
# tests inside each, with the results coming back over the serial console.
#
#   tests/kernel-matrix/matrix.sh [--kernels "5.10 6.1 6.12"] [--build DIR]
#                           [--filter GTEST_FILTER] [options]
#
#   --kernels LIST   kernels to boot, each the newest package of its kind:
#                    5.10, 6.1, 6.12: the cloud-amd64 kernel of bullseye,
#                    bookworm, trixie; 6.1-generic: bookworm's generic amd64
#                    kernel; 6.1-rt: bookworm's PREEMPT_RT kernel; trixie-bpo: the
#                    cloud kernel of trixie-backports; sid: the newest cloud
#                    kernel of unstable. They differ in configuration, not
#                    only in version.
#   --build DIR      egressd build directory (default: build); the binaries
#                    are packed at the paths the tests were compiled with
#   --filter F       gtest filter (default: the suites of
#                    tests/kernel/data_path_test.cpp but its 1 ms test,
#                    which emulation is too slow for); "" runs no tests
#   --kernel-config Y  YAML lines for the agent's `kernel:` section, e.g.
#                    "bytes_hook: kprobe": egressd check and the tests'
#                    agents run with them inside the VMs (a fallback path)
#   --timeout S      wall-clock limit per VM (default 480)
#   --results FILE   the generated Markdown (default docs/kernels/matrix-results.md)
#   --refresh        look for newer kernels (default: reuse the cached .debs)
#   --no-build       do not run `cmake --build` on the egressd targets first
#   --no-bpftool     skip `bpftool feature probe kernel` inside the VMs
#
# Kernels come from Debian's archive through apt with a private
# configuration (APT_CONFIG: its own sources.list, lists, cache and an empty
# apt.conf.d) under ${XDG_CACHE_HOME:-~/.cache}/egressd-kernels, so the
# system's apt sources and state are untouched; signatures are checked with
# debian-archive-keyring. Reruns use the cached .debs and need no network.
#
# Output: a line per kernel and a summary on stdout, serial logs under
# BUILD/kernels/, and the results document. Exit status: 0 when every kernel
# passed `egressd check` and the tests and its VM finished, 1 otherwise, 2 on
# bad usage or a missing prerequisite.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/kernel-matrix
KERNELS="5.10 6.1 6.12"
BUILD=$ROOT/build
# The data path suites, less the one test that times a process to under 1 ms:
# under emulation no process is that fast.
# Sctp.* runs here only: the guests load Debian's sctp module, and this
# project's development VM has no SCTP.
FILTER='DataPath.*:Methods/TcpSendPaths.*:Families/UdpFamilies.*:Shutdown.*:Sctp.*-DataPath.ProcessThatLivesUnderAMillisecondIsNamed'
KERNEL_CONFIG=""
TIMEOUT=480
RESULTS=$ROOT/docs/kernels/matrix-results.md
REFRESH=0
BUILD_FIRST=1
BPFTOOL_PROBE=1
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/egressd-kernels
MIRROR=http://deb.debian.org
# Debian release of each kernel, the package it is (the newest name matching
# the pattern), and the release busybox and a newer archive keyring come from
# (this machine's, or bookworm).
declare -A RELEASE=([5.10]=bullseye [6.1]=bookworm [6.12]=trixie [6.1-generic]=bookworm [6.1-rt]=bookworm
  [trixie-bpo]=trixie-backports [sid]=sid)
declare -A PACKAGE=(
  [5.10]='^linux-image-5\.10[.-][0-9][^ ]*-cloud-amd64(-unsigned)?$'
  [6.1]='^linux-image-6\.1[.-][0-9][^ ]*-cloud-amd64(-unsigned)?$'
  [6.12]='^linux-image-6\.12[.-][0-9][^ ]*-cloud-amd64(-unsigned)?$'
  [6.1-generic]='^linux-image-6\.1[.-][0-9][^ ]*[0-9]-amd64(-unsigned)?$'
  [6.1-rt]='^linux-image-6\.1[.-][0-9][^ ]*-rt-amd64(-unsigned)?$'
  [trixie-bpo]='^linux-image-[0-9][^ ]*-cloud-amd64(-unsigned)?$'
  [sid]='^linux-image-[0-9][^ ]*-cloud-amd64(-unsigned)?$')
HOST_RELEASE=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null)
case $HOST_RELEASE in bullseye | bookworm | trixie) ;; *) HOST_RELEASE=bookworm ;; esac
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while (($#)); do
  case $1 in
    --kernels) KERNELS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --filter) FILTER=$2; shift 2 ;;
    --kernel-config) KERNEL_CONFIG=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --results) RESULTS=$2; shift 2 ;;
    --refresh) REFRESH=1; shift ;;
    --no-build) BUILD_FIRST=0; shift ;;
    --no-bpftool) BPFTOOL_PROBE=0; shift ;;
    -h | --help) usage 0 ;;
    *) echo "matrix: unknown argument $1" >&2; usage 2 >&2 ;;
  esac
done
for k in $KERNELS; do
  [[ -n ${RELEASE[$k]:-} ]] || { echo "matrix: no Debian release known for kernel $k (know: ${!RELEASE[*]})" >&2; exit 2; }
done
[[ $FILTER != *"'"* ]] || { echo "matrix: the filter may not contain a single quote" >&2; exit 2; }
[[ $KERNEL_CONFIG != *"'"* ]] || { echo "matrix: --kernel-config may not contain a single quote" >&2; exit 2; }
if ! [[ $TIMEOUT =~ ^[0-9]+$ ]] || ((TIMEOUT < 120)); then
  echo "matrix: --timeout needs 120 or more seconds" >&2
  exit 2
fi

log() { echo "[matrix $(date +%T)] $*" >&2; }
die() { echo "matrix: $*" >&2; exit 2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- prerequisites and the build --------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null; then
  ((EUID == 0)) || die "qemu-system-x86_64 is missing: run scripts/install-deps.sh --with-tests as root"
  "$ROOT/scripts/install-deps.sh" --with-tests
fi
for tool in apt-get apt-cache dpkg-deb strip readelf ldd cc clang pkg-config dash /usr/bin/python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh --with-tests installs what the matrix needs)"
done
if ((BUILD_FIRST)); then
  [[ -f $BUILD/CMakeCache.txt ]] || cmake -S "$ROOT" -B "$BUILD" >/dev/null
  log "building egressd, egressd_kernel_tests and egressd-traffic in $BUILD"
  cmake --build "$BUILD" -j"$(nproc)" --target egressd egressd_kernel_tests egressd-traffic >/dev/null
fi
BUILD=$(cd "$BUILD" && pwd)
# The tests find the binaries and the source files at the paths they were
# compiled with; the VM image holds them at the same paths.
cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$BUILD/CMakeCache.txt"; }
BIN_DIR=$(cache_value egressd_BINARY_DIR)
SRC_DIR=$(cache_value egressd_SOURCE_DIR)
[[ -n $BIN_DIR && -n $SRC_DIR ]] || die "$BUILD is not an egressd build directory"
for f in egressd tests/egressd_kernel_tests tests/egressd-traffic bpf/egressd.bpf.o bpf/vmlinux.h; do
  [[ -f $BIN_DIR/$f ]] || die "$BIN_DIR/$f is missing: build egressd first (or drop --no-build)"
done
OUT=$BUILD/kernels
mkdir -p "$OUT" "$CACHE"

# The probe helper and its one-program-per-hook object, built with the
# project's compilers against this machine's libbpf and vmlinux.h.
if [[ ! $OUT/egressd-hook-probe -nt $HERE/hook_probe.c ]]; then
  # shellcheck disable=SC2046 # pkg-config prints several words
  cc -O2 -Wall -Wextra -o "$OUT/egressd-hook-probe" "$HERE/hook_probe.c" $(pkg-config --cflags --libs libbpf)
fi
if [[ ! $OUT/hooks.bpf.o -nt $HERE/hooks.bpf.c ]]; then
  clang -g -O2 -target bpf -D__TARGET_ARCH_x86 -Wall -I"$BIN_DIR/bpf" -c "$HERE/hooks.bpf.c" -o "$OUT/hooks.bpf.o"
fi

# --- Debian's archive through a private apt configuration ------------------
# Each release gets its own sources.list, lists and package cache; the .debs
# share one directory. APT_CONFIG is read before /etc/apt/apt.conf.d, so the
# system's hooks and settings stay out of these runs.
apt_setup() {
  local rel=$1 dir=$CACHE/apt/$1
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$CACHE/debs" "$CACHE/apt/empty.d"
  [[ -f $CACHE/apt/status ]] || : >"$CACHE/apt/status"
  case $rel in
    sid | experimental | *-backports) echo "deb [signed-by=$KEYRING] $MIRROR/debian $rel main" >"$dir/sources.list" ;;
    *)
      cat >"$dir/sources.list" <<EOF
deb [signed-by=$KEYRING] $MIRROR/debian $rel main
deb [signed-by=$KEYRING] $MIRROR/debian $rel-updates main
deb [signed-by=$KEYRING] $MIRROR/debian-security $rel-security main
EOF
      ;;
  esac
  cat >"$dir/apt.conf" <<EOF
Dir::Etc::Main "/dev/null";
Dir::Etc::Parts "$CACHE/apt/empty.d";
Dir::Etc::SourceList "$dir/sources.list";
Dir::Etc::SourceParts "$CACHE/apt/empty.d";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$CACHE/apt/empty.d";
Dir::State::Lists "$dir/lists";
Dir::State::status "$CACHE/apt/status";
Dir::Cache "$dir/cache";
Dir::Cache::Archives "$CACHE/debs";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
EOF
  # Unstable and backports carry a Valid-Until a week or two ahead; a mirror
  # that serves an older snapshot of them is still signed, and the
  # signatures are still checked.
  case $rel in sid | experimental | *-backports) echo 'Acquire::Check-Valid-Until "false";' >>"$dir/apt.conf" ;; esac
  # As root apt downloads as _apt, who cannot enter a home directory.
  if ((EUID == 0)); then echo 'APT::Sandbox::User "root";' >>"$dir/apt.conf"; fi
}
apt_in() { local rel=$1; shift; APT_CONFIG=$CACHE/apt/$rel/apt.conf "$@"; }

declare -A UPDATED=()
apt_update() {
  local rel=$1 out
  [[ -n ${UPDATED[$rel]:-} ]] && return 0
  apt_setup "$rel"
  log "$rel: apt-get update (private lists in $CACHE/apt/$rel)"
  if ! out=$(apt_in "$rel" apt-get update --error-on=any 2>&1); then
    if grep -q NO_PUBKEY <<<"$out" && [[ $KEYRING == /usr/share/keyrings/* && $rel != "$HOST_RELEASE" ]]; then
      newer_keyring
      apt_setup "$rel"
      out=$(apt_in "$rel" apt-get update --error-on=any 2>&1) || die "$rel: apt-get update failed:"$'\n'"$out"
    else
      die "$rel: apt-get update failed:"$'\n'"$out"
    fi
  fi
  UPDATED[$rel]=1
}

# A release signed with a key this system's debian-archive-keyring lacks:
# take debian-archive-keyring from this machine's release, whose signature the
# system's keys check, and use its keyring. Verification stays on.
newer_keyring() {
  log "the archive key is not in the system keyring: using debian-archive-keyring from $HOST_RELEASE"
  apt_update "$HOST_RELEASE"
  download "$HOST_RELEASE" debian-archive-keyring || die "cannot download debian-archive-keyring from $HOST_RELEASE"
  rm -rf "$CACHE/keyring" && mkdir -p "$CACHE/keyring"
  dpkg-deb -x "$DEB" "$CACHE/keyring"
  KEYRING=$CACHE/keyring/usr/share/keyrings/debian-archive-keyring.gpg
  [[ -f $KEYRING ]] || die "debian-archive-keyring from $HOST_RELEASE has no $KEYRING"
  UPDATED=()
}

# Downloads the candidate of a package into the cache: sets DEB to its path,
# or returns 1 when the archive does not serve it.
download() {
  local rel=$1 pkg=$2 version out
  version=$(apt_in "$rel" apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
  [[ -n $version ]] || die "$rel: no package $pkg"
  DEB=$CACHE/debs/${pkg}_${version//:/%3a}_amd64.deb
  [[ -f $DEB ]] && return 0
  log "$rel: downloading $pkg $version"
  if ! out=$(cd "$CACHE/debs" && apt_in "$rel" apt-get download -q "$pkg=$version" 2>&1) || [[ ! -f $DEB ]]; then
    log "$rel: $pkg $version cannot be downloaded: $(grep -m1 '^E:' <<<"$out" || echo "$out" | tail -n 1)"
    return 1
  fi
}

# The package a key stands for (a name, or for a kernel series the newest
# downloadable name matching a pattern), found once and remembered in
# $CACHE/selected/ (--refresh looks again): sets PKG and DEB.
select_deb() {
  local rel=$2 want=$3 sel=$CACHE/selected/$1 candidates
  if ((!REFRESH)) && [[ -f $sel ]] && read -r PKG DEB <"$sel" && [[ -f $DEB ]]; then
    return
  fi
  apt_update "$rel"
  candidates=$want
  if [[ $want == ^* ]]; then
    # Newest first; an archive that has dropped a suite's pool (bullseye-
    # security after its LTS) still lists its packages, so fall back.
    candidates=$(apt_in "$rel" apt-cache pkgnames linux-image- | grep -E "$want" | sort -rV | head -n 8 || true)
    [[ -n $candidates ]] || die "$rel: no package matches $want"
  fi
  for PKG in $candidates; do
    if download "$rel" "$PKG"; then
      mkdir -p "$CACHE/selected"
      echo "$PKG $DEB" >"$sel"
      return
    fi
  done
  die "$rel: none of ${candidates//$'\n'/ } can be downloaded"
}

# Unpacks a .deb once; prints the directory.
unpack() {
  local deb=$1 dir
  dir=$CACHE/unpacked/$(basename "$1" .deb)
  if [[ ! -f $dir/.unpacked ]]; then
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$deb" "$dir"
    touch "$dir/.unpacked"
  fi
  echo "$dir"
}

deb_version() { dpkg-deb -f "$1" Version; }

# --- the part of the VM image every kernel shares ----------------------------
build_base_image() {
  local busybox=$1 list=$OUT/base.list py=$OUT/python.list
  local egressd=$BIN_DIR/egressd tests=$BIN_DIR/tests/egressd_kernel_tests traffic=$BIN_DIR/tests/egressd-traffic
  mkdir -p "$OUT/etc"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$OUT/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$OUT/etc/group"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$OUT/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$OUT/etc/hosts"
  local bpftool=
  ((BPFTOOL_PROBE)) && bpftool=$(command -v bpftool || true)
  {
    echo "EGRESSD='$egressd'"
    echo "EGRESSD_OBJ='$BIN_DIR/bpf/egressd.bpf.o'"
    echo "HOOK_PROBE=/usr/libexec/egressd-matrix/egressd-hook-probe"
    echo "HOOKS_OBJ=/usr/libexec/egressd-matrix/hooks.bpf.o"
    echo "BPFTOOL='${bpftool:+/usr/sbin/bpftool}'"
    echo "KERNEL_TESTS='$tests'"
    echo "TEST_FILTER='$FILTER'"
    echo "KERNEL_CONFIG='$KERNEL_CONFIG'"
    echo "TEST_TIMEOUT=$((TIMEOUT - 90))"
    echo "VALIDATE='/usr/bin/python3 $SRC_DIR/tests/support/validate_events.py $SRC_DIR/docs/egressd-events.schema.json'"
  } >"$OUT/etc/env"

  # The Python that the tests' schema check (tests/support/validate_events.py)
  # runs: only the modules it imports, found by running it here once.
  echo '{"@timestamp": "2026-01-01T00:00:00.000Z", "event": {"action": "flow-ended"}}' >"$OUT/sample-events.json"
  PYTHON_FILES_OUT=$py /usr/bin/python3 "$HERE/python_files.py" "$SRC_DIR/tests/support/validate_events.py" \
    "$SRC_DIR/docs/egressd-events.schema.json" "$OUT/sample-events.json" >/dev/null || true
  [[ -s $py ]] || die "could not list the files python3 needs (is python3-jsonschema installed?)"

  {
    echo "file /init $HERE/init.sh 0755"
    echo "file /usr/libexec/egressd-matrix/probe.sh $HERE/probe.sh 0755"
    echo "file /etc/egressd-matrix/env $OUT/etc/env"
    echo "file /etc/egressd-matrix/sample-events.json $OUT/sample-events.json"
    for f in passwd group nsswitch.conf hosts; do echo "file /etc/$f $OUT/etc/$f 0644"; done
    echo "nod /dev/console 0600 c 5 1"
    echo "nod /dev/null 0666 c 1 3"
    for d in /proc /sys /dev /run /var /root /sys/fs/cgroup /sys/fs/bpf; do echo "dir $d"; done
    echo "dir /tmp 1777"
    echo "slink /var/run ../run"
    echo "file /usr/bin/busybox $busybox 0755"
    # Debian's /bin/sh: busybox's sh would run its own applets before PATH (its
    # ip has no netns).
    echo "elf /usr/bin/dash $(command -v dash)"
    echo "slink /usr/bin/sh dash"
    # Every busybox applet, last on PATH: the real ip, ss and python3 win.
    for applet in $("$busybox" --list); do
      [[ $applet == busybox ]] || echo "slink /usr/libexec/egressd-matrix/bb/$applet /usr/bin/busybox"
    done
    echo "strip $egressd $egressd"
    echo "strip $tests $tests"
    echo "strip $traffic $traffic"
    echo "file $BIN_DIR/bpf/egressd.bpf.o $BIN_DIR/bpf/egressd.bpf.o"
    echo "elf /usr/libexec/egressd-matrix/egressd-hook-probe $OUT/egressd-hook-probe"
    echo "file /usr/libexec/egressd-matrix/hooks.bpf.o $OUT/hooks.bpf.o"
    if [[ -n $bpftool ]]; then echo "elf /usr/sbin/bpftool $bpftool"; fi
    echo "elf /usr/bin/ip $(command -v ip)"
    echo "elf /usr/bin/ss $(command -v ss)"
    for f in "$SRC_DIR"/tests/support/* "$SRC_DIR/docs/egressd-events.schema.json" /usr/share/publicsuffix/*; do
      if [[ -f $f ]]; then echo "file $f $f"; fi
    done
  } >"$list"
  /usr/bin/python3 "$HERE/mkinitramfs.py" "$OUT/base.cpio.gz" "$list" "$py"
}

# --- one kernel ---------------------------------------------------------------
# Config options the boot and the tests need built in, and those that may be
# modules (packed from the kernel package and loaded by init.sh).
BUILTIN=(BLK_DEV_INITRD RD_GZIP DEVTMPFS TMPFS PROC_FS SYSFS SERIAL_8250 SERIAL_8250_CONSOLE BINFMT_ELF BINFMT_SCRIPT)
WANTED=(BPF_SYSCALL DEBUG_INFO_BTF CGROUPS CGROUP_BPF BPF_EVENTS BPF_JIT NET_NS IO_URING FTRACE DEBUG_FS SECURITYFS)
declare -A MODULE_OF=([IPV6]=ipv6 [PACKET]=af_packet [VETH]=veth [INET_DIAG]=inet_diag [INET_TCP_DIAG]=tcp_diag
  [INET_UDP_DIAG]=udp_diag [IP_SCTP]=sctp)

config_value() { sed -n "s/^CONFIG_$2=//p" "$1" | tr -d '"'; }

# Appends a module and, first, its dependencies to the load order.
declare -A QUEUED
queue_module() {
  local moddir=$1 name=$2 stage=$3 file dep
  [[ -n ${QUEUED[$name]:-} ]] && return 0
  QUEUED[$name]=1
  file=$(find "$moddir/kernel" -name "$name.ko" -o -name "$name.ko.xz" -o -name "$name.ko.zst" -o \
    -name "${name//_/-}.ko" -o -name "${name//_/-}.ko.xz" -o -name "${name//_/-}.ko.zst" | head -n 1)
  [[ -n $file ]] || die "module $name is not in $moddir"
  local plain=$stage/${name}.ko
  case $file in
    *.xz) xz -dc "$file" >"$plain" || die "cannot decompress $file (xz-utils installed?)" ;;
    *.zst) zstd -qdc "$file" >"$plain" || die "cannot decompress $file (zstd installed?)" ;;
    *) cp "$file" "$plain" ;;
  esac
  for dep in $(readelf -p .modinfo "$plain" | sed -n 's/.*depends=//p' | tr ',' ' '); do
    queue_module "$moddir" "$dep" "$stage"
  done
  echo "$name" >>"$stage/order"
}

build_kernel_image() {
  local unpacked=$1 kver=$2 config=$3 image=$4 opt v
  local stage=$OUT/$kver/modules
  rm -rf "$stage" && mkdir -p "$stage" && : >"$stage/order"
  for opt in "${BUILTIN[@]}"; do
    v=$(config_value "$config" "$opt")
    [[ $v == y ]] || { BOOT_PROBLEM="CONFIG_$opt is ${v:-not set}; booting from an initramfs on ttyS0 needs it built in"; return 1; }
  done
  for opt in "${WANTED[@]}"; do
    v=$(config_value "$config" "$opt")
    [[ $v == y ]] || log "$kver: CONFIG_$opt is ${v:-not set}; some probes will say so"
  done
  local moddir
  for moddir in "$unpacked/lib/modules/$kver" "$unpacked/usr/lib/modules/$kver"; do [[ -d $moddir ]] && break; done
  QUEUED=()
  # sctp's libcrc32c asks the crypto API for crc32c when it loads, and there
  # is no modprobe here to load one: the generic implementation goes first.
  # (From 6.14 sctp uses the crc32c library directly: no libcrc32c then.)
  if [[ $(config_value "$config" CRYPTO_CRC32C) == m ]] && [[ -n $(find "$moddir/kernel" -name 'libcrc32c.ko*' | head -n 1) ]]; then
    queue_module "$moddir" crc32c_generic "$stage"
  fi
  for opt in "${!MODULE_OF[@]}"; do
    v=$(config_value "$config" "$opt")
    case $v in
      y) ;;
      m) queue_module "$moddir" "${MODULE_OF[$opt]}" "$stage" ;;
      *) log "$kver: CONFIG_$opt is ${v:-not set}; tests that need it will fail" ;;
    esac
  done
  local list=$OUT/$kver/image.list name
  : >"$OUT/$kver/modules.order"
  {
    echo "file /boot/config-$kver $config"
    while read -r name; do
      echo "file /usr/lib/modules/$kver/$name.ko $stage/$name.ko"
      echo "/usr/lib/modules/$kver/$name.ko" >>"$OUT/$kver/modules.order"
    done <"$stage/order"
    echo "file /etc/egressd-matrix/modules $OUT/$kver/modules.order"
  } >"$list"
  /usr/bin/python3 "$HERE/mkinitramfs.py" "$OUT/$kver/extra.cpio.gz" "$list"
  # The kernel unpacks concatenated archives one after the other.
  cat "$OUT/base.cpio.gz" "$OUT/$kver/extra.cpio.gz" >"$image"
}

run_vm() {
  local kernel=$1 initrd=$2 serial=$3
  timeout -k 10 "$TIMEOUT" qemu-system-x86_64 \
    -nodefaults -nographic -no-reboot -no-user-config \
    -accel tcg -cpu ${QEMU_CPU:-max} -smp 2 -m 2048 \
    -serial stdio \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3 mitigations=off random.trust_cpu=on" \
    </dev/null >"$serial" 2>"$serial.qemu"
}

# --- the matrix -------------------------------------------------------------------
started=$(now)
INDEX=$OUT/index.tsv
: >"$INDEX"
failures=0
summary=()

t=$(now)
select_deb busybox-static "$HOST_RELEASE" busybox-static
busybox=$(unpack "$DEB")/bin/busybox
build_base_image "$busybox"
log "shared image: $(du -h "$OUT/base.cpio.gz" | cut -f1) in $(since "$t") s"

# This machine's kernel first: `egressd check` and the probes, no VM.
t=$(now)
host_log=$OUT/host.log
host_config=/boot/config-$(uname -r)
host_tmp=$(mktemp -d)
EGRESSD=$BIN_DIR/egressd EGRESSD_OBJ=$BIN_DIR/bpf/egressd.bpf.o HOOK_PROBE=$OUT/egressd-hook-probe \
  HOOKS_OBJ=$OUT/hooks.bpf.o BPFTOOL=$( ((BPFTOOL_PROBE)) && command -v bpftool || true) PROBE_TMP=$host_tmp \
  sh "$HERE/probe.sh" >"$host_log" 2>&1 || true
rm -rf "$host_tmp"
printf 'name=host\tkind=host\tlog=%s\tconfig=%s\n' "$host_log" "$host_config" >>"$INDEX"
line=$(/usr/bin/python3 "$HERE/report.py" line "$host_log" --host) || true
summary+=("host $line (probes $(since "$t") s)")
echo "host $line"

for k in $KERNELS; do
  rel=${RELEASE[$k]}
  t=$(now)
  select_deb "$k" "$rel" "${PACKAGE[$k]}"
  pkg=$PKG deb=$DEB
  unpacked=$(unpack "$deb")
  if [[ ! -d $unpacked/boot ]]; then
    # Debian after trixie splits the image: linux-binary-* holds
    # /usr/lib/modules/KVER/vmlinuz, linux-base-* its config and
    # linux-modules-* the modules. Unpack them beside the image package.
    for part in linux-binary linux-base linux-modules; do
      [[ -f $unpacked/.$part ]] && continue
      download "$rel" "$part-${pkg#linux-image-}" || die "$rel: cannot download $part-${pkg#linux-image-}"
      dpkg-deb -x "$DEB" "$unpacked" && touch "$unpacked/.$part"
    done
  fi
  fetch_s=$(since "$t")
  vmlinuz=$(find "$unpacked/boot" -name 'vmlinuz-*' 2>/dev/null | head -n 1 || true)
  if [[ -n $vmlinuz ]]; then
    kver=${vmlinuz##*/vmlinuz-}
    config=$unpacked/boot/config-$kver
  else
    vmlinuz=$(find "$unpacked/usr/lib/modules" -mindepth 2 -maxdepth 2 -name vmlinuz | head -n 1)
    [[ -n $vmlinuz ]] || die "$pkg: no vmlinuz in the package"
    kver=$(basename "$(dirname "$vmlinuz")")
    config=$(dirname "$vmlinuz")/config
  fi
  mkdir -p "$OUT/$kver"
  serial=$OUT/$kver/serial.log
  initrd=$OUT/$kver/initrd.img
  version=$(deb_version "$deb")

  t=$(now)
  status=ok
  vm_s=0
  if build_kernel_image "$unpacked" "$kver" "$config" "$initrd"; then
    initrd_s=$(since "$t")
    log "$kver: booting ($pkg $version, initramfs $(du -h "$initrd" | cut -f1), limit $TIMEOUT s)"
    t=$(now)
    run_vm "$vmlinuz" "$initrd" "$serial" || { rc=$?; status=exit-$rc; ((rc == 124 || rc == 137)) && status=timeout; }
    # qemu's TCG now and then crashes a guest kernel outright (seen: a double
    # fault in kmem_cache_alloc under python3 on 6.12, gone on the next
    # boot). One more boot then, and the report says so.
    if grep -qE 'PANIC: double fault|Kernel panic - not syncing' "$serial" && ! grep -q '^@@matrix done' "$serial"; then
      mv "$serial" "$serial.crashed"
      log "$kver: the guest kernel crashed under emulation ($serial.crashed); booting it once more"
      status=ok
      run_vm "$vmlinuz" "$initrd" "$serial" || { rc=$?; status=exit-$rc; ((rc == 124 || rc == 137)) && status=timeout; }
      echo "@@matrix note the first boot crashed under emulation; this is the second" >>"$serial"
    fi
    vm_s=$(since "$t")
  else
    initrd_s=$(since "$t")
    status="not booted: $BOOT_PROBLEM"
    echo "matrix: $status" >"$serial"
  fi
  printf 'name=%s\tkind=vm\trelease=%s\tpackage=%s\tversion=%s\tlog=%s\tconfig=%s\tfetch_s=%s\tinitrd_s=%s\tvm_s=%s\tstatus=%s\n' \
    "$kver" "$rel" "$pkg" "$version" "$serial" "$config" "$fetch_s" "$initrd_s" "$vm_s" "$status" >>"$INDEX"
  failed=0
  line=$(/usr/bin/python3 "$HERE/report.py" line "$serial") || failed=1
  [[ $status == ok ]] || { failed=1; line+="; qemu: $status"; }
  failures=$((failures + failed))
  if ((failed)); then
    # The failing tests' names and gtest's failure messages, so that a CI log
    # says what failed without the serial log (which stays on that machine).
    grep -E '^\[  FAILED  \] [A-Za-z]' "$serial" | sort -u | sed "s/^/  $k: /" || true
    grep -E -A 8 ': Failure$' "$serial" | head -n 80 | sed "s/^/  $k| /" || true
  fi
  line+=" (download $fetch_s s, initramfs $initrd_s s, VM $vm_s s)"
  summary+=("$k $line")
  echo "$k $line"
done

revision=$(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo "not a git checkout")
printf 'kind=meta\tegressd=%s\tsource=%s (%s)\tfilter=%s\ttotal_s=%s\tkernel_config=%s\n' \
  "$("$BIN_DIR/egressd" --version 2>&1 | head -n 1)" "$SRC_DIR" "$revision" "$FILTER" "$(since "$started")" \
  "$(tr '\n' ';' <<<"$KERNEL_CONFIG" | sed 's/;$//; s/;/; /g')" >>"$INDEX"
mkdir -p "$(dirname "$RESULTS")"
/usr/bin/python3 "$HERE/report.py" markdown "$INDEX" "$RESULTS"
echo
echo "Kernel matrix, $(since "$started") s in all; serial logs in $OUT; results in ${RESULTS#"$ROOT"/}:"
for s in "${summary[@]}"; do echo "  $s"; done
n=$(wc -w <<<"$KERNELS")
echo "$((n - failures)) passed, $failures failed"
((failures == 0))
