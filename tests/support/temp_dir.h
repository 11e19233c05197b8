// Temporary directories owned by the test: made with mkdtemp under /tmp and
// removed with everything in them when the object goes away, whatever ASSERT
// returned early. EGRESSD_KEEP_TEST_FILES=1 keeps them for a post-mortem.
#pragma once

#include <string>

namespace egressd::test {

class TempDir {
 public:
  // /tmp/PREFIX-XXXXXX
  explicit TempDir(const std::string& prefix = "egressd-test");
  virtual ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A TempDir with a tmpfs of `size` (mount(2) syntax: "16k") mounted on it,
// unmounted before the tree is removed. Needs CAP_SYS_ADMIN; mounted() says
// whether it worked and error() why not.
class TmpfsDir : public TempDir {
 public:
  TmpfsDir(const std::string& prefix, const std::string& size);
  ~TmpfsDir() override;
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  bool mounted_ = false;
  std::string error_;
};

}  // namespace egressd::test
