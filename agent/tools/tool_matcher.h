// Decides which tool a process is, and whether a destination is one the tool
// is expected to contact.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "tool_catalog.h"

namespace egressd {

class ToolMatcher {
 public:
  explicit ToolMatcher(std::vector<ToolSpec> tools);

  // The first tool whose matchers accept the process; 0 when none. exe_file
  // is read for sha256 matchers (a /proc/PID/exe path works after deletion).
  uint32_t match(const std::string& exe, const std::vector<std::string>& argv,
                 const std::string& comm, const std::string& exe_file) const;

  // nullptr for 0 or an unknown id.
  const ToolSpec* tool(uint32_t id) const;
  bool follows_children(uint32_t id) const;
  // nullopt when the tool has no expectations; a flow is expected when its
  // port is listed (or no ports are) and its address is in a CIDR or its
  // name matches a domain (or neither list is given).
  std::optional<bool> expected(uint32_t id, const flow_addr& dst, const std::string& domain) const;

  const std::vector<ToolSpec>& tools() const { return tools_; }

 private:
  std::string sha256_of(const std::string& path) const;

  std::vector<ToolSpec> tools_;
  bool any_sha256_ = false;
  // Digests by (device, inode, size, mtime in ns), so each binary is read once.
  mutable std::mutex cache_mu_;
  mutable std::map<std::tuple<dev_t, ino_t, off_t, int64_t>, std::string> sha_cache_;
};

// True when name is domain or, for "*.d", a subdomain of d.
bool domain_matches(const std::string& pattern, const std::string& name);

}  // namespace egressd
