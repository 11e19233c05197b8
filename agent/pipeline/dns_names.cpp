#include "dns_names.h"

#include "net_addr.h"

#include <libpsl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace egressd {

DnsNames::Addr DnsNames::key(uint16_t family, const uint8_t* addr) {
  Addr k{};
  k[0] = family == AF_INET ? 4 : 6;
  std::memcpy(k.data() + 1, addr, family == AF_INET ? 4 : 16);
  return k;
}

void DnsNames::add(ProcKey proc, uint16_t family, const uint8_t* addr, const std::string& name,
                   uint32_t ttl_s, uint64_t now_ns) {
  const uint64_t ttl_ns = std::max<uint64_t>(uint64_t(ttl_s) * 1'000'000'000ULL, limits_.min_ttl_ns);
  auto& m = by_proc_[proc];
  auto [it, inserted] = m.insert_or_assign(key(family, addr), Entry{name, now_ns + ttl_ns, now_ns});
  if (!inserted) return;
  ++total_;
  if (m.size() > limits_.per_process) {
    auto oldest = std::min_element(m.begin(), m.end(), [](const auto& a, const auto& b) {
      return a.second.added_ns < b.second.added_ns;
    });
    m.erase(oldest);
    --total_;
  }
  while (total_ > limits_.total) evict_oldest();
}

void DnsNames::evict_oldest() {
  const std::pair<const Addr, Entry>* oldest = nullptr;
  std::map<Addr, Entry>* owner = nullptr;
  for (auto& [p, m] : by_proc_)
    for (auto& e : m)
      if (!oldest || e.second.added_ns < oldest->second.added_ns) {
        oldest = &e;
        owner = &m;
      }
  if (!owner) return;
  owner->erase(oldest->first);
  --total_;
}

std::string DnsNames::lookup(ProcKey proc, const flow_addr& dst, uint64_t now_ns) const {
  auto p = by_proc_.find(proc);
  if (p == by_proc_.end()) return {};
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  Addr k = dst.family == AF_INET6 && std::memcmp(dst.addr_be, mapped, 12) == 0
               ? key(AF_INET, dst.addr_be + 12)
               : key(dst.family, dst.addr_be);
  auto e = p->second.find(k);
  if (e == p->second.end() || e->second.expiry_ns < now_ns) return {};
  return e->second.name;
}

void DnsNames::expire(uint64_t now_ns) {
  for (auto p = by_proc_.begin(); p != by_proc_.end();) {
    for (auto e = p->second.begin(); e != p->second.end();) {
      if (e->second.expiry_ns < now_ns) {
        e = p->second.erase(e);
        --total_;
      } else {
        ++e;
      }
    }
    p = p->second.empty() ? by_proc_.erase(p) : std::next(p);
  }
}

std::string registrable_domain(const std::string& name) {
  if (is_address_literal(name)) return name;  // "127.0.0.1" is no domain "0.1"
  static const psl_ctx_t* psl = [] {
    const psl_ctx_t* ctx = psl_latest(nullptr);
    return ctx ? ctx : psl_builtin();
  }();
  const char* r = psl ? psl_registrable_domain(psl, name.c_str()) : nullptr;
  return r ? r : name;
}

}  // namespace egressd
