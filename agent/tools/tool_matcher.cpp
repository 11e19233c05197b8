#include "tool_matcher.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>

#include "text.h"

namespace egressd {

bool domain_matches(const std::string& pattern, const std::string& name) {
  if (pattern.rfind("*.", 0) == 0) {
    const std::string suffix = pattern.substr(1);  // ".example.com"
    return name.size() > suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  return pattern == name;
}

ToolMatcher::ToolMatcher(std::vector<ToolSpec> tools) : tools_(std::move(tools)) {
  for (const auto& t : tools_) any_sha256_ |= !t.sha256.empty();
}

const ToolSpec* ToolMatcher::tool(uint32_t id) const {
  return id >= 1 && id <= tools_.size() ? &tools_[id - 1] : nullptr;
}

bool ToolMatcher::follows_children(uint32_t id) const {
  const ToolSpec* t = tool(id);
  return t && t->follow_children;
}

std::string ToolMatcher::sha256_of(const std::string& path) const {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return {};
  auto key = std::make_tuple(st.st_dev, st.st_ino, st.st_size,
                             int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec);
  {
    std::lock_guard lock(cache_mu_);
    if (auto it = sha_cache_.find(key); it != sha_cache_.end()) return it->second;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) EVP_DigestUpdate(ctx, buf, static_cast<size_t>(in.gcount()));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  for (unsigned i = 0; i < len; ++i) hex += fmt::format("{:02x}", md[i]);
  std::lock_guard lock(cache_mu_);
  sha_cache_[key] = hex;
  return hex;
}

uint32_t ToolMatcher::match(const std::string& exe, const std::vector<std::string>& argv,
                            const std::string& comm, const std::string& exe_file) const {
  std::string digest;
  bool digest_done = false;
  for (size_t i = 0; i < tools_.size(); ++i) {
    const ToolSpec& t = tools_[i];
    const auto id = static_cast<uint32_t>(i + 1);
    for (const auto& g : t.executables)
      if (!exe.empty() && glob_match(g, exe)) return id;
    for (const auto& g : t.args)
      for (const auto& a : argv)
        if (glob_match(g, a)) return id;
    for (const auto& g : t.comm)
      if (!comm.empty() && glob_match(g, comm)) return id;
    if (!t.sha256.empty() && any_sha256_) {
      if (!digest_done) {
        digest = sha256_of(exe_file.empty() ? exe : exe_file);
        digest_done = true;
      }
      if (!digest.empty() && std::find(t.sha256.begin(), t.sha256.end(), digest) != t.sha256.end())
        return id;
    }
  }
  return 0;
}

std::optional<bool> ToolMatcher::expected(uint32_t id, const flow_addr& dst,
                                          const std::string& domain) const {
  const ToolSpec* t = tool(id);
  if (!t || !t->has_expectations()) return std::nullopt;
  if (!t->expected_ports.empty() &&
      std::find(t->expected_ports.begin(), t->expected_ports.end(), dst.port) == t->expected_ports.end())
    return false;
  if (t->expected_cidrs.empty() && t->expected_domains.empty()) return true;
  for (const auto& c : t->expected_cidrs)
    if (c.contains(dst)) return true;
  if (!domain.empty())
    for (const auto& d : t->expected_domains)
      if (domain_matches(d, domain)) return true;
  return false;
}

}  // namespace egressd
