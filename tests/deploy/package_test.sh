#!/usr/bin/env bash
# Builds the Debian package with CPack and inspects it:
#   - configures a build directory with -DCMAKE_INSTALL_PREFIX=/usr (and, while
#     the top-level CMakeLists.txt does not include deploy/packaging.cmake yet,
#     -DCMAKE_PROJECT_INCLUDE=deploy/packaging.cmake), builds, runs cpack -G DEB;
#   - control fields, file list with modes and owners, conffiles, maintainer
#     scripts (sh -n), md5sums;
#   - the binary is stripped and runs (--version), the default configuration
#     is accepted by it, the manual page renders without groff warnings, the
#     changelog's version is the package's, the packaged unit verifies with
#     the packaged binary and manual page;
#   - lintian: fails on any error or warning. The tags accepted, with their
#     reasons, are deploy/debian/lintian-overrides, shipped in the package as
#     /usr/share/lintian/overrides/egressd; informational tags are shown.
# The package lands in the build directory (build-deploy by default,
# EGRESSD_DEPLOY_BUILD_DIR to change it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need_pkgs cmake make g++ dpkg-dev lintian file man-db binutils systemd
if [[ $EUID -eq 0 && -x $REPO/scripts/install-deps.sh ]]; then
  "$REPO/scripts/install-deps.sh" >/dev/null
fi

step "configure and build in $BUILD_DIR"
args=(-DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEGRESSD_BUILD_TESTS=OFF)
if grep -qE '^[^#]*include\([^)]*deploy/packaging\.cmake' "$REPO/CMakeLists.txt"; then
  echo "CMakeLists.txt includes deploy/packaging.cmake"
  args+=(-UCMAKE_PROJECT_INCLUDE)
else
  echo "CMakeLists.txt does not include deploy/packaging.cmake yet: injecting it with CMAKE_PROJECT_INCLUDE"
  args+=(-DCMAKE_PROJECT_INCLUDE="$REPO/deploy/packaging.cmake")
fi
cmake -S "$REPO" -B "$BUILD_DIR" "${args[@]}" >"$BUILD_DIR.configure.log" 2>&1 ||
  { cat "$BUILD_DIR.configure.log"; bad "cmake configure"; finish; exit 1; }
rm -f "$BUILD_DIR.configure.log"
cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null || { bad "build"; finish; exit 1; }
rm -f "$BUILD_DIR"/egressd_*.deb
(cd "$BUILD_DIR" && cpack -G DEB) >"$BUILD_DIR/cpack.log" 2>&1 || { cat "$BUILD_DIR/cpack.log"; bad "cpack -G DEB"; finish; exit 1; }
deb=$(ls "$BUILD_DIR"/egressd_*.deb)
ok "cpack -G DEB: $(basename "$deb") ($(stat -c %s "$deb") bytes)"

step "control fields (dpkg-deb -f)"
field() { dpkg-deb -f "$deb" "$1"; }
version=$(sed -n 's/^project(egressd VERSION \([0-9.]*\).*/\1/p' "$REPO/CMakeLists.txt")
check "Package: egressd" test "$(field Package)" = egressd
check "Version: $version-1 (project version, Debian revision 1)" test "$(field Version)" = "$version-1"
check "Architecture: $(dpkg --print-architecture)" test "$(field Architecture)" = "$(dpkg --print-architecture)"
check "Section: net, Priority: optional" test "$(field Section)/$(field Priority)" = net/optional
check "Maintainer is set" test -n "$(field Maintainer)"
depends=$(field Depends)
check "Depends: libbpf1, libc6, libstdc++6 (dpkg-shlibdeps) and init-system-helpers: $depends" \
  bash -c "grep -q 'libbpf1' <<<'$depends' && grep -q 'libc6' <<<'$depends' && grep -q 'libstdc++6' <<<'$depends' && grep -q 'init-system-helpers' <<<'$depends'"
check "Description: a synopsis and an extended description" \
  bash -c "test \$(dpkg-deb -f '$deb' Description | wc -l) -gt 3"

step "contents (dpkg-deb -c)"
contents=$(dpkg-deb -c "$deb")
want_file() {  # want_file MODE PATH
  if grep -qE "^$1 root/root +[0-9]+ [0-9-]+ [0-9:]+ \./${2#/}$" <<<"$contents"; then
    ok "$1 root/root $2"
  else
    bad "$2 with mode $1 owned by root: $(grep -E " \./${2#/}$" <<<"$contents" || echo missing)"
  fi
}
want_file -rwxr-xr-x /usr/sbin/egressd
want_file -rw-r--r-- /etc/egressd/egressd.yaml
want_file -rw-r--r-- /lib/systemd/system/egressd.service
want_file -rw-r--r-- /usr/share/man/man8/egressd.8.gz
want_file -rw-r--r-- /usr/share/doc/egressd/copyright
want_file -rw-r--r-- /usr/share/doc/egressd/changelog.Debian.gz
want_file -rw-r--r-- /usr/share/lintian/overrides/egressd
check "every directory is drwxr-xr-x root/root" \
  bash -c "! grep '^d' <<<'$contents' | grep -vq '^drwxr-xr-x root/root'"
check "nothing under /usr/local, /home or /tmp" bash -c "! grep -qE ' \./(usr/local|home|tmp)/' <<<'$contents'"

step "control archive"
ctrl=$(mktemp -d)
root=$(mktemp -d)
on_exit "rm -rf $ctrl $root"
dpkg-deb -e "$deb" "$ctrl"
dpkg-deb -x "$deb" "$root"
chmod 755 "$root"  # egressd runs as nobody below
check "conffiles lists /etc/egressd/egressd.yaml, and every file in /etc is a conffile" \
  test "$(find "$root/etc" -type f | sed "s|^$root||" | sort)" = "$(sort "$ctrl/conffiles")"
for s in postinst prerm postrm; do
  check "$s: executable, valid sh, manages egressd.service with deb-systemd-*" \
    bash -c "test -x '$ctrl/$s' && sh -n '$ctrl/$s' && grep -q 'deb-systemd-' '$ctrl/$s'"
done
check "md5sums covers every regular file" \
  test "$(wc -l <"$ctrl/md5sums")" -eq "$(find "$root" -type f | wc -l)"
check "md5sums match" bash -c "cd '$root' && md5sum --quiet -c '$ctrl/md5sums'"

step "what is inside"
bin=$root/usr/sbin/egressd
check "the binary is stripped: $(file -b "$bin" | grep -o 'stripped\|not stripped')" \
  bash -c "file -b '$bin' | grep -q ', stripped'"
check "no .comment section (stripped like dh_strip)" bash -c "! readelf -S '$bin' | grep -q '\.comment'"
check "hardened: PIE and BIND_NOW" bash -c "readelf -d '$bin' | grep -q 'BIND_NOW' && readelf -d '$bin' | grep -q 'PIE'"
check "it runs: $("$bin" --version 2>&1)" bash -c "'$bin' --version | grep -q '^egressd $version'"
rc=0
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
  "$bin" run --config "$root/etc/egressd/egressd.yaml" >/dev/null 2>"$root.err" || rc=$?
if [[ $rc -eq 1 ]] && grep -q privileges "$root.err"; then
  ok "/etc/egressd/egressd.yaml is accepted by egressd (exit 1 at the privilege check, not 2)"
else
  bad "/etc/egressd/egressd.yaml: egressd exits $rc: $(cat "$root.err")"
fi
rm -f "$root.err"
warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$root/usr/share/man/man8/egressd.8.gz" 2>&1 >/dev/null || true)
check "egressd(8) renders without groff warnings" test -z "$warnings"
for section in NAME SYNOPSIS COMMANDS OPTIONS CONFIGURATION "EXIT STATUS" SIGNALS FILES; do
  check "egressd(8) has $section" bash -c "MANWIDTH=80 man -l '$root/usr/share/man/man8/egressd.8.gz' 2>/dev/null | grep -q '^$section'"
done
check "changelog.Debian.gz's top entry is $(field Version)" \
  bash -c "zcat '$root/usr/share/doc/egressd/changelog.Debian.gz' | head -1 | grep -q '^egressd ($(field Version))'"
mkdir -p "$root/verify"
sed "s|^ExecStart=/usr/sbin/egressd |ExecStart=$bin |" "$root/lib/systemd/system/egressd.service" >"$root/verify/egressd.service"
out=$(cd "$root/verify" && MANPATH=$root/usr/share/man systemd-analyze verify "$root/verify/egressd.service" 2>&1) || true
check "the packaged unit verifies with the packaged binary and man page (systemd-analyze verify printed: ${out:-nothing})" \
  test -z "$out"

step "lintian $(lintian --version | awk '{print $2}')"
lintian_out=$(lintian --info --display-level '>=pedantic' --show-overrides --tag-display-limit 0 "$deb" 2>&1) && lrc=0 || lrc=$?
printf '%s\n' "$lintian_out" | grep -E '^[EWIPXO]: ' | sed 's/^/     /' || true
errors=$(grep -cE '^[EW]: ' <<<"$lintian_out" || true)
if [[ $errors -eq 0 ]]; then
  ok "lintian: no error or warning ($(grep -cE '^O: ' <<<"$lintian_out" || true) overridden, see deploy/debian/lintian-overrides)"
else
  bad "lintian: $errors errors or warnings"
fi
check "lintian --fail-on error,warning exits 0" lintian --fail-on error,warning "$deb"

finish
