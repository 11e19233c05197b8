#include "flow_table.h"

#include <fmt/format.h>
#include <sys/socket.h>

#include <cstring>

#include "net_addr.h"

namespace egressd {
namespace {


std::string tool_label(const Process& p) { return p.tool.empty() ? "none" : p.tool; }

std::string binary_label(const Process& p) {
  if (!p.exe.empty()) return p.exe;
  return p.comm.empty() ? "unknown" : "[" + p.comm + "]";
}

}  // namespace

size_t connect_result_index(uint32_t result) {
  switch (result) {
    case CONNECT_RESULT_OK: return 0;
    case CONNECT_RESULT_REFUSED: return 1;
    case CONNECT_RESULT_TIMEOUT: return 2;
    case CONNECT_RESULT_DENIED: return 3;
    default: return 4;
  }
}

FlowTable::Flow FlowTable::make_flow(std::shared_ptr<const Process> proc, const flow_addr& dst,
                                     uint16_t family, uint16_t type, uint16_t protocol,
                                     uint64_t cookie, uint64_t start_ns) {
  Flow f;
  f.proc = std::move(proc);
  f.dst = dst;
  f.family = family;
  f.type = type;
  f.protocol = protocol;
  f.cookie = cookie;
  f.start_ns = start_ns;
  f.logged_ns = start_ns;
  std::string addr = format_addr(dst);
  const uint64_t now = d_.clock.boot_now_ns();
  f.series = d_.counters.admit(SeriesKey{tool_label(*f.proc), binary_label(*f.proc),
                                         addr.empty() ? "unknown" : addr, std::to_string(dst.port),
                                         transport_name(family, type, protocol)},
                               now);
  if (d_.tools && f.proc->tool_id) {
    f.expected = d_.tools->expected(f.proc->tool_id, dst, "");
    if (f.expected == false) d_.counters.add_unexpected_flow(f.series, now);
  }
  f.id = fmt::format("{}-{}-{}", cookie, f.proc->key.tgid, addr.empty() ? "0" : addr);
  if (dst.port) f.id += fmt::format("-{}", dst.port);
  return f;
}

void FlowTable::apply(Flow& f, uint64_t bytes, uint64_t sends, uint64_t wire_bytes,
                      uint64_t wire_packets) {
  auto delta = [](uint64_t now, uint64_t& seen) {
    uint64_t d = now > seen ? now - seen : 0;
    if (now > seen) seen = now;
    return d;
  };
  uint64_t db = delta(bytes, f.bytes);
  uint64_t ds = delta(sends, f.sends);
  uint64_t dwb = delta(wire_bytes, f.wire_bytes);
  uint64_t dwp = delta(wire_packets, f.wire_packets);
  if (db || ds || dwb || dwp) d_.counters.add_sent(f.series, db, ds, dwb, dwp, d_.clock.boot_now_ns());
}

nlohmann::json FlowTable::base(const char* action, std::vector<std::string> type,
                               uint64_t ts_boot_ns, const Process& p) const {
  nlohmann::json j = ecs_event(d_.host, action, "event", {"network"}, std::move(type),
                               d_.clock.to_wall_ns(ts_boot_ns));
  j["process"] = ecs_process(p, d_.clock);
  j["user"]["id"] = std::to_string(p.uid);
  if (p.tool.empty())
    j["egressd"]["tool"] = nullptr;
  else
    j["egressd"]["tool"] = p.tool;
  if (p.cgroup_id) j["egressd"]["cgroup"]["id"] = p.cgroup_id;
  return j;
}

void FlowTable::log_flow(const Flow& f, const char* action, const char* type, uint64_t ts_boot_ns,
                         const char* reason) {
  nlohmann::json j = base(action, {"connection", type}, ts_boot_ns, *f.proc);
  j["event"]["start"] = iso8601(d_.clock.to_wall_ns(f.start_ns));
  j["event"]["duration"] = ts_boot_ns > f.start_ns ? ts_boot_ns - f.start_ns : 0;
  if (reason) j["event"]["reason"] = reason;
  std::string addr = format_addr(f.dst);
  if (!addr.empty()) {
    j["destination"]["ip"] = addr;
    j["destination"]["address"] = addr;
  }
  if (f.dst.port) j["destination"]["port"] = f.dst.port;
  if (f.expected) j["egressd"]["destination"]["expected"] = *f.expected;
  j["network"]["transport"] = f.series.transport;
  std::string ntype = network_type(f.dst);
  if (!ntype.empty()) j["network"]["type"] = ntype;
  j["network"]["direction"] = "egress";
  j["source"]["bytes"] = f.bytes;
  j["egressd"]["flow"]["id"] = f.id;
  j["egressd"]["flow"]["sends"] = f.sends;
  j["egressd"]["flow"]["wire_bytes"] = f.wire_bytes;
  j["egressd"]["flow"]["wire_packets"] = f.wire_packets;
  j["egressd"]["flow"]["socket_cookie"] = f.cookie;
  d_.log.write(j);
}

FlowTable::Flow& FlowTable::primary_for(const sock_flow& s) {
  auto it = primary_.find(s.cookie);
  if (it != primary_.end()) return it->second;
  auto proc = d_.procs.resolve({s.owner.tgid, s.owner.start_ns});
  Flow f = make_flow(proc, s.dst, s.sk_family, s.sk_type, s.sk_protocol, s.cookie,
                     s.connect_ns ? s.connect_ns : s.created_ns);
  f.connected = s.flags & SOCK_F_CONNECTED;
  return primary_.emplace(s.cookie, std::move(f)).first->second;
}

void FlowTable::on_connect(const connect_event& ev) {
  auto proc = d_.procs.resolve({ev.proc.tgid, ev.proc.start_ns});
  attempts_[ev.cookie] = Attempt{proc, ev};
  Flow f = make_flow(proc, ev.dst, ev.sk_family, ev.sk_type, ev.sk_protocol, ev.cookie,
                     ev.hdr.ts_boot_ns);
  f.connected = true;
  primary_.insert_or_assign(ev.cookie, std::move(f));
}

void FlowTable::on_connect_result(const connect_result_event& ev) {
  auto it = attempts_.find(ev.cookie);
  if (it == attempts_.end()) {
    ++results_without_attempt_;
    return;
  }
  const Attempt& a = it->second;
  const size_t result = connect_result_index(ev.result);
  nlohmann::json j = base("connection-attempted", {"connection", "start"}, a.ev.hdr.ts_boot_ns,
                          *a.proc);
  j["event"]["outcome"] = result == 0 ? "success" : "failure";
  j["event"]["duration"] = ev.hdr.ts_boot_ns > a.ev.hdr.ts_boot_ns ? ev.hdr.ts_boot_ns - a.ev.hdr.ts_boot_ns : 0;
  std::string addr = format_addr(a.ev.dst);
  j["destination"]["ip"] = addr;
  j["destination"]["address"] = addr;
  j["destination"]["port"] = a.ev.dst.port;
  j["network"]["transport"] = transport_name(a.ev.sk_family, a.ev.sk_type, a.ev.sk_protocol);
  j["network"]["type"] = network_type(a.ev.dst);
  j["network"]["direction"] = "egress";
  j["process"]["thread"]["id"] = a.ev.tid;
  j["egressd"]["connection"]["result"] = kConnectResults[result];
  if (a.proc->tool_id && d_.tools)
    if (auto exp = d_.tools->expected(a.proc->tool_id, a.ev.dst, ""))
      j["egressd"]["destination"]["expected"] = *exp;
  j["egressd"]["flow"]["socket_cookie"] = ev.cookie;
  if (ev.error) j["error"]["code"] = errno_name(ev.error);
  d_.log.write(j);

  auto f = primary_.find(ev.cookie);
  if (f != primary_.end()) {
    d_.counters.add_connection(f->second.series, result, ev.hdr.ts_boot_ns);
  } else {
    Flow tmp = make_flow(a.proc, a.ev.dst, a.ev.sk_family, a.ev.sk_type, a.ev.sk_protocol,
                         ev.cookie, a.ev.hdr.ts_boot_ns);
    d_.counters.add_connection(tmp.series, result, ev.hdr.ts_boot_ns);
  }
  attempts_.erase(it);
}

void FlowTable::on_close(const sock_close_event& ev) {
  const sock_flow& s = ev.flow;
  if (s.flags & SOCK_F_EXTRA) closed_with_extra_.insert(s.cookie);
  attempts_.erase(s.cookie);
  if (!s.bytes && !(s.flags & SOCK_F_CONNECTED)) {
    primary_.erase(s.cookie);
    return;
  }
  Flow& f = primary_for(s);
  apply(f, s.bytes, s.sends, s.wire_bytes, s.wire_packets);
  log_flow(f, "flow-ended", "end", ev.hdr.ts_boot_ns,
           ev.reason == CLOSE_RECONNECT ? "reconnect" : "closed");
  primary_.erase(s.cookie);
}

void FlowTable::on_live_sockets(const std::vector<sock_flow>& socks) {
  live_cookies_.clear();
  for (const sock_flow& s : socks) {
    live_cookies_.insert(s.cookie);
    if (!s.bytes && !s.wire_bytes && !primary_.count(s.cookie)) continue;
    Flow& f = primary_for(s);
    apply(f, s.bytes, s.sends, s.wire_bytes, s.wire_packets);
  }
}

std::vector<flow_key> FlowTable::on_extra_flows(
    const std::vector<std::pair<flow_key, flow_counters>>& entries) {
  std::vector<flow_key> ended;
  for (const auto& [key, c] : entries) {
    ExtraKey k;
    std::memcpy(k.data(), &key, sizeof(key));
    auto it = extra_.find(k);
    if (it == extra_.end()) {
      auto proc = d_.procs.resolve({key.sender.tgid, key.sender.start_ns});
      Flow f = make_flow(proc, key.dst, c.sk_family, c.sk_type, c.sk_protocol, key.cookie,
                         c.first_ns);
      it = extra_.emplace(k, std::move(f)).first;
    }
    Flow& f = it->second;
    apply(f, c.bytes, c.sends, 0, 0);
    // Sockets of families without a release hook end when no task holds them.
    const bool gone = closed_with_extra_.count(key.cookie) ||
                      (c.sk_family == AF_PACKET && !live_cookies_.count(key.cookie));
    if (gone) {
      log_flow(f, "flow-ended", "end", c.last_ns ? c.last_ns : c.first_ns, "closed");
      extra_.erase(it);
      ended.push_back(key);
    }
  }
  closed_with_extra_.clear();
  return ended;
}

void FlowTable::emit_updates(uint64_t now_boot_ns, uint64_t interval_ns) {
  auto visit = [&](Flow& f) {
    if (f.bytes == f.logged_bytes || now_boot_ns < f.logged_ns + interval_ns) return;
    log_flow(f, "flow-updated", "info", now_boot_ns, "interval");
    f.logged_bytes = f.bytes;
    f.logged_ns = now_boot_ns;
  };
  for (auto& [_, f] : primary_) visit(f);
  for (auto& [_, f] : extra_) visit(f);
}

std::vector<SeriesKey> FlowTable::live_series() const {
  std::vector<SeriesKey> out;
  out.reserve(open_flows());
  for (const auto& [_, f] : primary_) out.push_back(f.series);
  for (const auto& [_, f] : extra_) out.push_back(f.series);
  return out;
}

void FlowTable::flush_all(uint64_t now_boot_ns, const char* reason) {
  auto visit = [&](Flow& f) {
    if (!f.bytes && !f.connected) return;
    log_flow(f, "flow-updated", "info", now_boot_ns, reason);
    f.logged_bytes = f.bytes;
    f.logged_ns = now_boot_ns;
  };
  for (auto& [_, f] : primary_) visit(f);
  for (auto& [_, f] : extra_) visit(f);
}

}  // namespace egressd
