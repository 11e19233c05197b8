#include "temp_dir.h"

#include <sys/mount.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace egressd::test {

TempDir::TempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp " + tmpl + ": " + std::strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  if (std::getenv("EGRESSD_KEEP_TEST_FILES")) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

TmpfsDir::TmpfsDir(const std::string& prefix, const std::string& size) : TempDir(prefix) {
  const std::string data = "size=" + size;
  mounted_ = mount("tmpfs", path().c_str(), "tmpfs", 0, data.c_str()) == 0;
  if (!mounted_) error_ = std::string("mount tmpfs on ") + path() + ": " + std::strerror(errno);
}

TmpfsDir::~TmpfsDir() {
  // MNT_DETACH: a process the test left with a file open there does not keep
  // the mount (and the directory) alive.
  if (mounted_ && umount2(path().c_str(), 0) != 0) umount2(path().c_str(), MNT_DETACH);
}

}  // namespace egressd::test
