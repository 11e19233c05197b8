# Debian package for egressd: install() rules for everything but the binary,
# and CPack's DEB generator.
#
# Include it from the top-level CMakeLists.txt right after project():
#
#   include(deploy/packaging.cmake OPTIONAL)
#
# (tests/deploy/package_test.sh injects it with -DCMAKE_PROJECT_INCLUDE when
# the top-level file does not include it yet). The binary's own rule,
# install(TARGETS egressd RUNTIME DESTINATION sbin), stays in CMakeLists.txt.
#
# Build the package:
#
#   cmake -S . -B build-deploy -DCMAKE_INSTALL_PREFIX=/usr -DEGRESSD_BUILD_TESTS=OFF
#   cmake --build build-deploy --target egressd
#   (cd build-deploy && cpack -G DEB)
#
# Nothing here changes a normal build: the extra install() rules only matter to
# `make install`, and CPack is only set up when the install prefix is /usr,
# where /etc and /lib/systemd/system are the right places.

if(DEFINED _EGRESSD_PACKAGING_INCLUDED)
  return()
endif()
set(_EGRESSD_PACKAGING_INCLUDED TRUE)

include(GNUInstallDirs)

set(_egressd_deploy ${CMAKE_CURRENT_LIST_DIR})
set(_egressd_src ${CMAKE_CURRENT_LIST_DIR}/..)
set(_egressd_gen ${CMAKE_BINARY_DIR}/deploy)
file(MAKE_DIRECTORY ${_egressd_gen})

# --- hardening ----------------------------------------------------------------
# Debian's default flags (dpkg-buildflags) that the compiler does not already
# apply by itself: PIE and RELRO are on by default on Debian; these add the
# stack protector, _FORTIFY_SOURCE in optimized builds and immediate binding.
# Set through the CMAKE_*_FLAGS variables so they reach every target of the
# directory wherever this file is included.
option(EGRESSD_HARDENING "Build with Debian's hardening flags" ON)
if(EGRESSD_HARDENING AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  string(APPEND CMAKE_C_FLAGS " -fstack-protector-strong")
  string(APPEND CMAKE_CXX_FLAGS " -fstack-protector-strong")
  foreach(_cfg RELEASE RELWITHDEBINFO MINSIZEREL)
    string(APPEND CMAKE_C_FLAGS_${_cfg} " -D_FORTIFY_SOURCE=2")
    string(APPEND CMAKE_CXX_FLAGS_${_cfg} " -D_FORTIFY_SOURCE=2")
  endforeach()
  string(APPEND CMAKE_EXE_LINKER_FLAGS " -Wl,-z,relro,-z,now")
endif()

# --- files compressed the way Debian wants them (gzip -9n: no name, no time) ---
find_program(EGRESSD_GZIP gzip)
if(NOT EGRESSD_GZIP)
  message(STATUS "egressd packaging: gzip not found; no install rules for the manual page and changelogs")
  return()
endif()
set(_egressd_gz
    "${_egressd_deploy}/egressd.8|${_egressd_gen}/egressd.8.gz"
    "${_egressd_deploy}/debian/changelog|${_egressd_gen}/changelog.Debian.gz"
    "${_egressd_src}/CHANGELOG.md|${_egressd_gen}/changelog.gz")
set(_egressd_gz_outputs)
foreach(_pair IN LISTS _egressd_gz)
  string(REPLACE "|" ";" _pair "${_pair}")
  list(GET _pair 0 _in)
  list(GET _pair 1 _out)
  add_custom_command(
    OUTPUT ${_out}
    COMMAND ${EGRESSD_GZIP} -9nc ${_in} > ${_out}
    DEPENDS ${_in}
    COMMENT "Compressing ${_out}")
  list(APPEND _egressd_gz_outputs ${_out})
endforeach()
add_custom_target(egressd_package_files ALL DEPENDS ${_egressd_gz_outputs})

# --- install rules -------------------------------------------------------------
# /etc and the systemd unit directory follow the install prefix: /etc and
# /lib/systemd/system for /usr (GNUInstallDirs maps /usr's sysconfdir to /etc),
# PREFIX/etc and PREFIX/lib/systemd/system otherwise.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(_egressd_unitdir_default /lib/systemd/system)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_get_variable(_egressd_pc_unitdir systemd systemdsystemunitdir)
    if(_egressd_pc_unitdir)
      set(_egressd_unitdir_default ${_egressd_pc_unitdir})
    endif()
  endif()
else()
  set(_egressd_unitdir_default ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()
set(EGRESSD_SYSTEMD_UNIT_DIR ${_egressd_unitdir_default} CACHE PATH "Where egressd.service is installed")

set(_egressd_docdir ${CMAKE_INSTALL_DATAROOTDIR}/doc/egressd)
install(FILES ${_egressd_deploy}/egressd.yaml DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/egressd)
install(FILES ${_egressd_deploy}/systemd/egressd.service DESTINATION ${EGRESSD_SYSTEMD_UNIT_DIR})
install(FILES ${_egressd_gen}/egressd.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${_egressd_deploy}/debian/copyright ${_egressd_gen}/changelog.Debian.gz ${_egressd_gen}/changelog.gz
              ${_egressd_src}/README.md
        DESTINATION ${_egressd_docdir})
foreach(_doc CLI METRICS EVENTS TOOLS DEPLOY)
  if(EXISTS ${_egressd_src}/docs/${_doc}.md)
    install(FILES ${_egressd_src}/docs/${_doc}.md DESTINATION ${_egressd_docdir})
  endif()
endforeach()
install(FILES ${_egressd_deploy}/prometheus/prometheus.yml ${_egressd_deploy}/prometheus/egressd-rules.yml
        DESTINATION ${_egressd_docdir}/examples/prometheus)
install(FILES ${_egressd_deploy}/alertmanager/alertmanager.yml DESTINATION ${_egressd_docdir}/examples/alertmanager)
install(FILES ${_egressd_deploy}/grafana/egressd-dashboard.json DESTINATION ${_egressd_docdir}/examples/grafana)
install(FILES ${_egressd_deploy}/debian/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides
        RENAME egressd)

# --- CPack: one .deb -----------------------------------------------------------
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "egressd packaging: install prefix is ${CMAKE_INSTALL_PREFIX}; "
                 "configure with -DCMAKE_INSTALL_PREFIX=/usr to build the Debian package")
  return()
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME egressd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "egressd developers")
set(CPACK_PACKAGE_CONTACT "egressd developer <dev@egressd.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "eBPF agent that attributes outbound bytes to processes")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_PRE_BUILD_SCRIPTS ${_egressd_deploy}/cpack_strip.cmake)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
    OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

set(CPACK_DEBIAN_PACKAGE_RELEASE 1)  # must match the top entry of deploy/debian/changelog
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # egressd_VERSION-RELEASE_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "egressd developer <dev@egressd.invalid>")
# Continuation lines of a control field start with a space; " ." is a blank line.
# The synopsis is CPACK_PACKAGE_DESCRIPTION_SUMMARY; CPack indents these lines
# and turns the empty ones into " ." paragraph breaks.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "egressd counts in the kernel the bytes every process sends on TCP, UDP, raw
ICMP and AF_PACKET sockets, over IPv4 and IPv6, on every send path, and
names the executable that sent them.

It writes one JSON event (Elastic Common Schema) per connection and flow and
serves per-process, per-destination totals as Prometheus metrics on
127.0.0.1:8789. Security and platform teams use it to audit what AI coding
tools, and everything they spawn, send and where.

The egressd service runs as a transient non-root user with CAP_BPF,
CAP_PERFMON and CAP_NET_ADMIN only. It needs Linux 6.3 or later with BTF
and cgroup v2.")
# dpkg-shlibdeps fills in the shared library dependencies; deb-systemd-helper
# and deb-systemd-invoke in the maintainer scripts come from init-system-helpers.
find_program(EGRESSD_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(EGRESSD_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  message(WARNING "egressd packaging: dpkg-shlibdeps not found (apt-get install dpkg-dev); "
                  "the package would lack its library dependencies")
endif()
set(CPACK_DEBIAN_PACKAGE_DEPENDS "init-system-helpers (>= 1.52)")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${_egressd_deploy}/debian/conffiles
    ${_egressd_deploy}/debian/postinst
    ${_egressd_deploy}/debian/prerm
    ${_egressd_deploy}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

include(CPack)
