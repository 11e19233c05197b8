// What each process itself resolved: answered addresses and the name it
// asked for, kept for the answer's TTL (at least min_ttl, since clients
// connect after short TTLs run out). Flows are named from here, never from
// reverse lookups. Bounded per process and in total; the oldest go first.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "events.h"
#include "process_table.h"

namespace egressd {

struct DnsNameLimits {
  size_t per_process = 4096;
  size_t total = 200000;
  uint64_t min_ttl_ns = 300ULL * 1'000'000'000ULL;
};

class DnsNames {
 public:
  explicit DnsNames(DnsNameLimits limits = {}) : limits_(limits) {}

  // family AF_INET (4 bytes) or AF_INET6 (16 bytes).
  void add(ProcKey proc, uint16_t family, const uint8_t* addr, const std::string& name,
           uint32_t ttl_s, uint64_t now_ns);
  // The name proc resolved for dst, or "". IPv4-mapped IPv6 matches IPv4.
  std::string lookup(ProcKey proc, const flow_addr& dst, uint64_t now_ns) const;
  void expire(uint64_t now_ns);
  size_t size() const { return total_; }

 private:
  using Addr = std::array<uint8_t, 17>;  // family tag + 16 bytes
  struct Entry {
    std::string name;
    uint64_t expiry_ns;
    uint64_t added_ns;
  };
  static Addr key(uint16_t family, const uint8_t* addr);
  void evict_oldest();

  DnsNameLimits limits_;
  std::map<ProcKey, std::map<Addr, Entry>> by_proc_;
  size_t total_ = 0;
};

// The registrable domain of name ("api.anthropic.com" -> "anthropic.com"),
// from the Public Suffix List; name itself when it has none.
std::string registrable_domain(const std::string& name);

}  // namespace egressd
