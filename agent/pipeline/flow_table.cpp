#include "flow_table.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string_view>

#include "dns_parser.h"
#include "http_parser.h"
#include "json_writer.h"
#include "net_addr.h"
#include "tls_parser.h"

namespace egressd {
namespace {

std::string tool_label(const Process& p) { return p.tool.empty() ? "none" : p.tool; }

std::string binary_label(const Process& p) {
  if (!p.exe.empty()) return p.exe;
  return p.comm.empty() ? "unknown" : "[" + p.comm + "]";
}

const char* source_name(int s) {
  static const char* names[] = {"address", "dns", "http", "sni", "connect"};
  return names[s];
}

std::string dns_type_name(uint16_t t) {
  switch (t) {
    case kDnsTypeA: return "A";
    case kDnsTypeAaaa: return "AAAA";
    case kDnsTypeCname: return "CNAME";
    case 65: return "HTTPS";
    default: return std::to_string(t);
  }
}

}  // namespace

bool is_dns_flow(const flow_addr& dst, uint16_t protocol) {
  return dst.port == 53 && (protocol == IPPROTO_UDP || protocol == IPPROTO_TCP);
}

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
  f.addr = format_addr(dst);
  f.id = fmt::format("{}-{}-{}", cookie, f.proc->key.tgid, f.addr.empty() ? "0" : f.addr);
  if (dst.port) f.id += fmt::format("-{}", dst.port);
  if (std::string name = dns_.lookup(f.proc->key, dst, d_.clock.boot_now_ns()); !name.empty())
    set_name(f, name, NameSource::kDns);
  return f;
}

void FlowTable::set_name(Flow& f, const std::string& name, NameSource source) {
  if (name.empty() || source <= f.source) return;
  f.name = name;
  f.source = source;
}

void FlowTable::settle_name(Flow& f) {
  if (f.named) return;
  f.named = true;
  std::string dest = f.addr.empty() ? "unknown" : f.addr;
  if (!f.name.empty() && d_.destination_label != DestinationLabel::kAddress)
    dest = d_.destination_label == DestinationLabel::kRegisteredDomain ? registrable_domain(f.name) : f.name;
  const uint64_t now = d_.clock.boot_now_ns();
  if (f.inbound) {
    f.series = d_.counters.admit(SeriesKey{tool_label(*f.proc), binary_label(*f.proc), "",
                                           std::to_string(f.local_port),
                                           transport_name(f.family, f.type, f.protocol), true},
                                 now);
    return;
  }
  f.series = d_.counters.admit(SeriesKey{tool_label(*f.proc), binary_label(*f.proc), dest,
                                         std::to_string(f.dst.port),
                                         transport_name(f.family, f.type, f.protocol)},
                               now);
  if (d_.tools && f.proc->tool_id && !is_dns_flow(f.dst, f.protocol)) {
    f.expected = d_.tools->expected(f.proc->tool_id, f.dst, f.name);
    if (f.expected == false) d_.counters.add_unexpected_flow(f.series, now);
  }
  if (f.attempt && f.result) log_connection(f);
}

void FlowTable::apply(Flow& f, uint64_t bytes, uint64_t sends, uint64_t wire_bytes,
                      uint64_t wire_packets) {
  // A connection counted as the name settles goes to the ledger with the
  // bytes below: one write.
  in_apply_ = true;
  settle_name(f);
  in_apply_ = false;
  auto delta = [](uint64_t now, uint64_t& seen) {
    uint64_t d = now > seen ? now - seen : 0;
    if (now > seen) seen = now;
    return d;
  };
  uint64_t db = delta(bytes, f.bytes);
  uint64_t ds = delta(sends, f.sends);
  uint64_t dwb = delta(wire_bytes, f.wire_bytes);
  uint64_t dwp = delta(wire_packets, f.wire_packets);
  if (!db && !ds && !dwb && !dwp) {
    if (f.ledger_pending) record(f);
    return;
  }
  d_.counters.add_sent(f.series, db, ds, dwb, dwp, d_.clock.boot_now_ns());
  record(f);
}

CountedKey FlowTable::ledger_key(const Flow& f) {
  if (f.extra) return f.key;
  return f.cookie;
}

// After counts were added to the metrics: the same counts into the ledger.
void FlowTable::record(Flow& f) {
  f.ledger_pending = false;
  const Counted now{f.bytes, f.sends, f.wire_bytes, f.wire_packets, f.ledger.last.connection, 0};
  if (ledger_)
    ledger_->record(ledger_key(f), f.series, f.ledger, now);
  else
    f.ledger.last = now;
}

// A connection the earlier agent saw made but had not counted yet (it waits
// for its name, and that agent was killed): its attempt is rebuilt from the
// socket's state, so that it is counted, and logged, once named.
void FlowTable::resume_connection(Flow& f, const sock_flow& s) {
  if (!ledger_ || f.ledger.last.connection || f.attempt) return;
  if (s.connect_state != CONNECT_DONE || !(s.flags & SOCK_F_CONNECTED) ||
      (s.flags & (SOCK_F_ADOPTED | SOCK_F_INBOUND)))
    return;
  connect_event ev{};
  ev.hdr.type = EVENT_CONNECT;
  ev.hdr.size = sizeof(ev);
  ev.hdr.ts_boot_ns = s.connect_ns;
  ev.cookie = s.cookie;
  ev.proc = s.owner;
  ev.tid = s.owner.tgid;
  ev.uid = s.owner_uid;
  ev.dst = s.dst;
  ev.sk_family = s.sk_family;
  ev.sk_type = s.sk_type;
  ev.sk_protocol = s.sk_protocol;
  connect_result_event r{};
  r.hdr.type = EVENT_CONNECT_RESULT;
  r.hdr.size = sizeof(r);
  r.hdr.ts_boot_ns = s.connect_ns;
  r.cookie = s.cookie;
  r.result = CONNECT_RESULT_OK;
  f.attempt = Attempt{f.proc, ev};
  f.result = r;
}

// A flow the earlier agent left: it starts from what that agent counted
// (its ledger entry), or without a ledger from all there was at first sight.
void FlowTable::take_over(Flow& f, const Counted& at_first_sight) {
  Counted c = at_first_sight;
  if (ledger_) {
    c = Counted{};
    if (auto e = ledger_->find(ledger_key(f))) {
      c = e->now;
      f.ledger = LedgerPosition{e->gen, e->base, e->now};
    }
  }
  f.bytes = c.bytes;
  f.sends = c.sends;
  f.wire_bytes = c.wire_bytes;
  f.wire_packets = c.wire_packets;
  f.ledger.last.connection = c.connection;
}

// Each event is written member by member in key order (base/json_writer.h):
// the top-level members are "@timestamp", "agent", "destination", "dns",
// "ecs", "egressd", "error", "event", "host", "network", "process", "source",
// "tls", "user".
// A line waits in the log's queue with its capacity: it is reserved to fit
// the last line and its newline, not doubled past it by appends.
std::string FlowTable::new_line() const {
  std::string line;
  line.reserve(line_hint_);
  return line;
}

void FlowTable::write_line(std::string line) {
  line_hint_ = std::max<size_t>(line.size() + 64, 256);
  d_.log.write(LogEvent(std::move(line)));
}

void FlowTable::head(JsonWriter& w, uint64_t ts_boot_ns) const {
  w.open().str("@timestamp", iso8601(d_.clock.to_wall_ns(ts_boot_ns))).members(ecs_.agent);
}

void FlowTable::destination_object(JsonWriter& w, const Flow& f) const {
  const std::string& addr = f.addr;
  if (addr.empty() && !f.dst.port && f.name.empty()) return;
  w.open("destination");
  if (!addr.empty()) w.str("address", f.name.empty() ? addr : f.name);
  if (!f.name.empty()) w.str("domain", f.name);
  if (!addr.empty()) w.str("ip", addr);
  if (f.dst.port) w.num("port", f.dst.port);
  if (!f.name.empty()) w.str("registered_domain", registrable_domain(f.name));
  w.close();
}

// "egressd": what sorts before "flow", then the flow's own members are the
// caller's, then what sorts after.
void FlowTable::egressd_head(JsonWriter& w, const Flow& f, const Process& p,
                             const char* connection_result) const {
  w.members(ecs_.ecs).open("egressd");
  if (p.cgroup_id) w.open("cgroup").num("id", p.cgroup_id).close();
  if (connection_result) w.open("connection").str("result", connection_result).close();
  if (f.expected || !f.name.empty()) {
    w.open("destination");
    if (f.expected) w.boolean("expected", *f.expected);
    if (!f.name.empty()) w.str("name_source", source_name(static_cast<int>(f.source)));
    w.close();
  }
}

void FlowTable::egressd_tail(JsonWriter& w, const Flow& f, const Process& p) const {
  process_flags(w, p);
  if (!f.proxy_target.empty()) w.open("proxy").str("target", f.proxy_target).close();
  tool_member(w, p);
  w.close();
}

// egressd.process: what ECS has no field for.
void FlowTable::process_flags(JsonWriter& w, const Process& p) const {
  if (p.fileless) w.open("process").boolean("fileless", true).close();
}

void FlowTable::tool_member(JsonWriter& w, const Process& p) const {
  if (p.tool.empty())
    w.null("tool");
  else
    w.str("tool", p.tool);
}

void FlowTable::network_object(JsonWriter& w, const flow_addr& dst, uint16_t family, uint16_t type,
                               uint16_t protocol, bool inbound) const {
  w.open("network").str("direction", inbound ? "ingress" : "egress");
  if (is_dns_flow(dst, protocol)) w.str("protocol", "dns");
  w.str("transport", transport_name(family, type, protocol));
  if (std::string ntype = network_type(dst); !ntype.empty()) w.str("type", ntype);
  w.close();
}

// "host", "network", "process" (with the thread when tid is set), "source".
void FlowTable::process_object(JsonWriter& w, const Process& p, uint32_t tid) const {
  const EcsProcessText& text = p.ecs.get([&] { return ecs_process(p, d_.clock); });
  w.open("process").members(text.head);
  if (tid) w.open("thread").num("id", tid).close();
  w.members(text.tail).close();
}

// source.bytes: what the process sent; for an accepted connection,
// source.port is the port the server accepted on.
void FlowTable::source_object(JsonWriter& w, uint64_t bytes, bool inbound, uint16_t local_port) const {
  w.open("source").num("bytes", bytes);
  if (inbound) w.num("port", local_port);
  w.close();
}

void FlowTable::tail(JsonWriter& w, const Process& p) const {
  w.open("user").str("id", std::to_string(p.uid)).close().close();
}

void FlowTable::log_flow(const Flow& f, const char* action, const char* type, uint64_t ts_boot_ns,
                         const char* reason) {
  std::string line = new_line();
  JsonWriter w(line);
  head(w, ts_boot_ns);
  destination_object(w, f);
  egressd_head(w, f, *f.proc, nullptr);
  w.open("flow")
      .str("id", f.id)
      .num("sends", f.sends)
      .num("socket_cookie", f.cookie)
      .num("wire_bytes", f.wire_bytes)
      .num("wire_packets", f.wire_packets)
      .close();
  egressd_tail(w, f, *f.proc);
  w.open("event")
      .str("action", action)
      .strings("category", {"network"})
      .num("duration", ts_boot_ns > f.start_ns ? ts_boot_ns - f.start_ns : 0)
      .str("kind", "event")
      .str("module", "egressd");
  if (reason) w.str("reason", reason);
  w.str("start", iso8601(d_.clock.to_wall_ns(f.start_ns))).strings("type", {"connection", type}).close();
  w.members(ecs_.host);
  network_object(w, f.dst, f.family, f.type, f.protocol, f.inbound);
  process_object(w, *f.proc, 0);
  source_object(w, f.bytes, f.inbound, f.local_port);
  if (!f.sni.empty()) w.open("tls").open("client").str("server_name", f.sni).close().close();
  tail(w, *f.proc);
  write_line(std::move(line));
}

void FlowTable::log_connection(Flow& f) {
  const Attempt& a = *f.attempt;
  const connect_result_event& ev = *f.result;
  const size_t result = connect_result_index(ev.result);
  // Once per flow, also when the earlier agent counted it before a kill.
  if (!is_dns_flow(f.dst, f.protocol) && !f.ledger.last.connection) {
    d_.counters.add_connection(f.series, result, ev.hdr.ts_boot_ns);
    f.ledger.last.connection = static_cast<uint32_t>(result + 1);
    if (in_apply_)
      f.ledger_pending = true;  // apply() writes it with the bytes
    else
      record(f);
  }
  if (d_.summary_interval_ns) {
    ++summary_for(f, a.ev.hdr.ts_boot_ns).results[result];
    f.attempt.reset();
    f.result.reset();
    return;
  }
  const Process& p = *a.proc;
  std::string line = new_line();
  JsonWriter w(line);
  head(w, a.ev.hdr.ts_boot_ns);
  destination_object(w, f);
  egressd_head(w, f, p, kConnectResults[result]);
  w.open("flow").str("id", f.id).num("socket_cookie", ev.cookie).close();
  egressd_tail(w, f, p);
  if (ev.error) w.open("error").str("code", errno_name(ev.error)).close();
  w.open("event")
      .str("action", "connection-attempted")
      .strings("category", {"network"})
      .num("duration", ev.hdr.ts_boot_ns > a.ev.hdr.ts_boot_ns ? ev.hdr.ts_boot_ns - a.ev.hdr.ts_boot_ns : 0)
      .str("kind", "event")
      .str("module", "egressd")
      .str("outcome", result == 0 ? "success" : "failure")
      .strings("type", {"connection", "start"})
      .close();
  w.members(ecs_.host);
  network_object(w, f.dst, f.family, f.type, f.protocol, false);
  process_object(w, p, a.ev.tid);
  if (!f.sni.empty()) w.open("tls").open("client").str("server_name", f.sni).close().close();
  tail(w, p);
  write_line(std::move(line));
  f.attempt.reset();
  f.result.reset();
}

FlowTable::Flow& FlowTable::primary_for(const sock_flow& s) {
  auto it = primary_.find(s.cookie);
  if (it != primary_.end()) return it->second;
  auto proc = d_.procs.resolve({s.owner.tgid, s.owner.start_ns}, s.owner.exec_id);
  Flow f = make_flow(proc, s.dst, s.sk_family, s.sk_type, s.sk_protocol, s.cookie,
                     s.connect_ns ? s.connect_ns : s.created_ns);
  f.connected = s.flags & SOCK_F_CONNECTED;
  f.inbound = s.flags & SOCK_F_INBOUND;
  f.local_port = s.local_port;
  if (adopted_before_ns_ && s.created_ns < adopted_before_ns_) {
    take_over(f, Counted{s.bytes, s.sends, s.wire_bytes, s.wire_packets, 0, 0});
    resume_connection(f, s);
  }
  return primary_.emplace(s.cookie, std::move(f)).first->second;
}

void FlowTable::on_connect(const connect_event& ev) {
  auto proc = d_.procs.resolve({ev.proc.tgid, ev.proc.start_ns}, ev.proc.exec_id);
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
  if (ev.result == CONNECT_RESULT_UNSENT) {
    ++unsent_udp_connects_[tool_label(*it->second.proc)];
    attempts_.erase(it);
    return;
  }
  auto f = primary_.find(ev.cookie);
  if (f == primary_.end()) {
    const Attempt& a = it->second;
    f = primary_.emplace(ev.cookie, make_flow(a.proc, a.ev.dst, a.ev.sk_family, a.ev.sk_type,
                                              a.ev.sk_protocol, ev.cookie, a.ev.hdr.ts_boot_ns))
            .first;
  }
  Flow& flow = f->second;
  flow.attempt = it->second;
  flow.result = ev;
  attempts_.erase(it);
  // A TCP connection that succeeded names itself with its first bytes.
  const bool wait = flow.type == SOCK_STREAM && ev.result == CONNECT_RESULT_OK && !flow.named;
  if (wait) {
    flow.name_deadline_ns = ev.hdr.ts_boot_ns + kNameWaitNs;
    return;
  }
  if (flow.named)
    log_connection(flow);
  else
    settle_name(flow);
}

void FlowTable::on_first_bytes(const PayloadRecord& rec) {
  auto f = primary_.find(rec.fixed.cookie);
  if (f == primary_.end()) return;
  Flow& flow = f->second;
  const std::string_view text(reinterpret_cast<const char*>(rec.data.data()), rec.data.size());
  HttpRequestInfo http = parse_http_request(text);
  if (!http.host.empty() && (http.status == HttpStatus::kOk || http.status == HttpStatus::kNeedMoreBytes)) {
    // An address in Host or CONNECT names no domain: the flow keeps its
    // address (or a better name from elsewhere).
    const bool literal = is_address_literal(http.host);
    if (http.method == "CONNECT") {
      if (!literal) set_name(flow, http.host, NameSource::kConnect);
      flow.proxy_target = http.port ? fmt::format("{}:{}", http.host, *http.port) : http.host;
    } else if (!literal) {
      set_name(flow, http.host, NameSource::kHttp);
    }
  } else if (http.status == HttpStatus::kMalformed) {
    ++parse_failures_["http"];
  } else {
    ClientHelloInfo hello = parse_client_hello(rec.data);
    if (!hello.server_name.empty()) {
      flow.sni = hello.server_name;
      if (!is_address_literal(hello.server_name)) set_name(flow, hello.server_name, NameSource::kSni);
    } else if (hello.status == TlsStatus::kMalformed) {
      ++parse_failures_["tls"];
    }
  }
  settle_name(flow);
}

void FlowTable::on_dns(const PayloadRecord& rec, bool answer) {
  const payload_event& e = rec.fixed;
  std::vector<DnsParseResult> messages;
  if (e.protocol == IPPROTO_TCP)
    messages = parse_dns_tcp_stream(rec.data).messages;
  else
    messages.push_back(parse_dns_message(rec.data));
  const ProcKey owner{e.owner.tgid, e.owner.start_ns};
  auto proc = d_.procs.resolve(owner, e.owner.exec_id);
  const uint64_t now = d_.clock.boot_now_ns();
  for (const DnsParseResult& m : messages) {
    // A copy the kernel cut at its limit still names what it holds; any
    // other short or malformed message is a parse failure.
    const bool cut = e.orig_len > e.len && m.status == DnsStatus::kTruncated;
    if (m.status != DnsStatus::kOk && !cut) {
      ++parse_failures_["dns"];
      continue;
    }
    if (answer) {
      for (const DnsResolvedAddress& r : resolve_answer_names(m.message)) {
        if (const auto* v4 = std::get_if<Ipv4Address>(&r.address))
          dns_.add(owner, AF_INET, v4->data(), r.asked_name, r.ttl, now);
        else if (const auto* v6 = std::get_if<Ipv6Address>(&r.address))
          dns_.add(owner, AF_INET6, v6->data(), r.asked_name, r.ttl, now);
      }
      continue;
    }
    for (const DnsQuestion& q : m.message.questions) {
      const std::string resolver = format_addr(e.peer);
      const std::string transport = e.protocol == IPPROTO_TCP ? "tcp" : "udp";
      std::string line = new_line();
      JsonWriter w(line);
      head(w, e.hdr.ts_boot_ns);
      w.open("destination").str("address", resolver).str("ip", resolver).num("port", e.peer.port).close();
      w.open("dns")
          .str("id", std::to_string(m.message.id))
          .open("question")
          .str("name", q.name)
          .str("registered_domain", registrable_domain(q.name))
          .str("type", dns_type_name(q.qtype))
          .close()
          .str("type", "query")
          .close();
      w.members(ecs_.ecs).open("egressd");
      if (proc->cgroup_id) w.open("cgroup").num("id", proc->cgroup_id).close();
      process_flags(w, *proc);
      tool_member(w, *proc);
      w.close();
      w.open("event")
          .str("action", "dns-query")
          .strings("category", {"network"})
          .str("kind", "event")
          .str("module", "egressd")
          .strings("type", {"protocol"})
          .close();
      w.members(ecs_.host);
      w.open("network")
          .str("direction", "egress")
          .str("protocol", "dns")
          .str("transport", transport)
          .str("type", network_type(e.peer))
          .close();
      process_object(w, *proc, 0);
      tail(w, *proc);
      write_line(std::move(line));
      SeriesKey k = d_.counters.admit(
          SeriesKey{tool_label(*proc), binary_label(*proc), resolver, std::to_string(e.peer.port), transport}, now);
      d_.counters.add_dns_query(k, now);
    }
  }
}

void FlowTable::on_payload(const PayloadRecord& rec) {
  switch (rec.fixed.kind) {
    case PAYLOAD_TCP_FIRST: on_first_bytes(rec); break;
    case PAYLOAD_DNS_QUERY: on_dns(rec, false); break;
    case PAYLOAD_DNS_ANSWER: on_dns(rec, true); break;
    default: ++parse_failures_["payload_kind"]; break;
  }
}

void FlowTable::on_close(const sock_close_event& ev) {
  const sock_flow& s = ev.flow;
  if (s.flags & SOCK_F_EXTRA) closed_with_extra_[s.cookie] = s.owner;
  if (s.flags & SOCK_F_INBOUND) inbound_closed_.insert(s.cookie);
  attempts_.erase(s.cookie);
  waited_sockets_.erase(s.cookie);
  // Nothing of its own and no destination, or a UDP socket that never sent.
  if (!s.bytes && (!(s.flags & SOCK_F_CONNECTED) || s.sk_type != SOCK_STREAM)) {
    primary_.erase(s.cookie);
    return;
  }
  Flow& f = primary_for(s);
  apply(f, s.bytes, s.sends, s.wire_bytes, s.wire_packets);
  end_flow(f, ev.hdr.ts_boot_ns, ev.reason == CLOSE_RECONNECT ? "reconnect" : "closed");
  primary_.erase(s.cookie);
}

void FlowTable::on_live_sockets(const std::vector<sock_flow>& socks) {
  live_cookies_.clear();
  inbound_live_.clear();
  for (const sock_flow& s : socks) {
    live_cookies_.insert(s.cookie);
    if (s.flags & SOCK_F_INBOUND) inbound_live_.insert(s.cookie);
    // A socket with no destination of its own and no bytes of its own
    // (unconnected UDP, raw): its flows are the per-destination ones.
    if (!s.bytes && !(s.flags & SOCK_F_CONNECTED) && !primary_.count(s.cookie)) continue;
    // A connected UDP socket begins its flow at its first send.
    if (!s.bytes && s.sk_type != SOCK_STREAM) continue;
    if (!primary_.count(s.cookie)) {
      if (wait_for_image(s.owner, waited_sockets_, s.cookie)) continue;
      waited_sockets_.erase(s.cookie);
    }
    Flow& f = primary_for(s);
    // A TCP connection that has sent nothing yet (its SYN has wire bytes)
    // still waits for the first payload to name it.
    if (!f.named && f.type == SOCK_STREAM && f.connected && s.bytes == 0) continue;
    apply(f, s.bytes, s.sends, s.wire_bytes, s.wire_packets);
  }
}

std::vector<flow_key> FlowTable::on_extra_flows(
    const std::vector<std::pair<flow_key, flow_counters>>& entries) {
  std::vector<flow_key> ended;
  std::set<uint64_t> still_closing;  // the closes of flows left for the next read
  for (const auto& [key, c] : entries) {
    ExtraKey k;
    std::memcpy(k.data(), &key, sizeof(key));
    auto it = extra_.find(k);
    if (it == extra_.end()) {
      if (wait_for_image(key.sender, waited_extra_, k)) {
        if (closed_with_extra_.count(key.cookie)) still_closing.insert(key.cookie);
        continue;
      }
      waited_extra_.erase(k);
      auto proc = d_.procs.resolve({key.sender.tgid, key.sender.start_ns}, key.sender.exec_id);
      Flow f = make_flow(proc, key.dst, c.sk_family, c.sk_type, c.sk_protocol, key.cookie,
                         c.first_ns);
      if (is_inbound(key.cookie)) {
        f.inbound = true;
        auto p = primary_.find(key.cookie);
        f.local_port = p != primary_.end() ? p->second.local_port : 0;
      }
      std::optional<proc_ident> owner;
      if (auto p = primary_.find(key.cookie); p != primary_.end()) {
        f.name = p->second.name;  // an inherited socket's name is the socket's
        f.source = p->second.source;
        owner = proc_ident{p->second.proc->key.tgid, p->second.proc->exec_id, p->second.proc->key.start_ns};
      } else if (auto c = closed_with_extra_.find(key.cookie); c != closed_with_extra_.end()) {
        owner = c->second;
      }
      // The owner after an execve: the same process, another program.
      if (owner && owner->tgid == key.sender.tgid && owner->exec_id != key.sender.exec_id)
        f.id += fmt::format("-x{}", key.sender.exec_id);
      f.extra = true;
      f.key = key;
      if (adopted_before_ns_ && c.first_ns < adopted_before_ns_)
        take_over(f, Counted{c.bytes, c.sends, 0, 0, 0, 0});
      it = extra_.emplace(k, std::move(f)).first;
    }
    Flow& f = it->second;
    apply(f, c.bytes, c.sends, 0, 0);
    // Sockets of families without a release hook end when no task holds them.
    const bool gone = closed_with_extra_.count(key.cookie) ||
                      (c.sk_family == AF_PACKET && !live_cookies_.count(key.cookie));
    if (gone) {
      end_flow(f, c.last_ns ? c.last_ns : c.first_ns, "closed");
      extra_.erase(it);
      ended.push_back(key);
    }
  }
  for (auto c = closed_with_extra_.begin(); c != closed_with_extra_.end();)
    c = still_closing.count(c->first) ? std::next(c) : closed_with_extra_.erase(c);
  inbound_closed_.clear();
  return ended;
}

// Whether a new flow of sender waits for the next read (wait_for_images):
// its image is not in the process table yet, and it has not waited before.
template <typename Key>
bool FlowTable::wait_for_image(const proc_ident& sender, std::set<Key>& waited, const std::type_identity_t<Key>& key) {
  if (!wait_for_images_ || d_.procs.knows({sender.tgid, sender.start_ns}, sender.exec_id) ||
      !waited.insert(key).second)
    return false;
  ++waited_for_image_;
  return true;
}

bool FlowTable::has_flow(const CountedKey& key) const {
  if (const auto* cookie = std::get_if<uint64_t>(&key))
    return primary_.count(*cookie) > 0 || waited_sockets_.count(*cookie) > 0;
  ExtraKey k;
  std::memcpy(k.data(), &std::get<flow_key>(key), sizeof(flow_key));
  return extra_.count(k) > 0 || waited_extra_.count(k) > 0;
}

bool FlowTable::is_inbound(uint64_t cookie) const {
  if (auto p = primary_.find(cookie); p != primary_.end() && p->second.inbound) return true;
  return inbound_live_.count(cookie) || inbound_closed_.count(cookie);
}

void FlowTable::emit_updates(uint64_t now_boot_ns, uint64_t interval_ns) {
  for (auto& [_, f] : primary_)
    if (!f.named && f.name_deadline_ns && now_boot_ns >= f.name_deadline_ns) settle_name(f);
  auto visit = [&](Flow& f) {
    if (f.bytes == f.logged_bytes || now_boot_ns < f.logged_ns + interval_ns) return;
    log_flow(f, "flow-updated", "info", now_boot_ns, "interval");
    f.logged_bytes = f.bytes;
    f.logged_ns = now_boot_ns;
    f.updated = true;
  };
  for (auto& [_, f] : primary_) visit(f);
  for (auto& [_, f] : extra_) visit(f);
  dns_.expire(now_boot_ns);
  if (d_.summary_interval_ns) {
    if (!summary_since_ns_) summary_since_ns_ = now_boot_ns;
    if (now_boot_ns >= summary_since_ns_ + d_.summary_interval_ns) log_summaries(now_boot_ns);
  }
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
    settle_name(f);
    if (!f.bytes && !f.connected) return;
    log_flow(f, "flow-updated", "info", now_boot_ns, reason);
    f.logged_bytes = f.bytes;
    f.logged_ns = now_boot_ns;
    f.updated = true;
  };
  for (auto& [_, f] : primary_) visit(f);
  for (auto& [_, f] : extra_) visit(f);
  log_summaries(now_boot_ns);
}

void FlowTable::end_flow(const Flow& f, uint64_t ts_boot_ns, const char* reason) {
  if (ledger_) ledger_->ended(ledger_key(f), f.ledger);
  const bool short_flow = !f.updated && ts_boot_ns < f.start_ns + d_.summary_interval_ns;
  if (!d_.summary_interval_ns || !short_flow) {
    log_flow(f, "flow-ended", "end", ts_boot_ns, reason);
    return;
  }
  Summary& s = summary_for(f, ts_boot_ns);
  ++s.flows;
  s.bytes += f.bytes;
  s.sends += f.sends;
  s.wire_bytes += f.wire_bytes;
  s.wire_packets += f.wire_packets;
}

FlowTable::Summary& FlowTable::summary_for(const Flow& f, uint64_t ts_boot_ns) {
  // An accepted connection's client port is ephemeral: its summary is per
  // client address and the port the server accepted on.
  SummaryKey k{f.proc->key, f.name.empty() ? f.addr : f.name, f.inbound ? f.local_port : f.dst.port,
               f.inbound, f.family, f.type, f.protocol};
  auto [it, fresh] = summaries_.try_emplace(std::move(k));
  Summary& s = it->second;
  if (fresh) {
    s.proc = f.proc;
    s.dst = f.dst;
    s.name = f.name;
    s.source = f.source;
    s.first_ns = ts_boot_ns;
  }
  if (!f.addr.empty() && s.addresses.size() < kSummaryAddresses) s.addresses.insert(f.addr);
  if (f.source > s.source) s.source = f.source;
  if (f.expected) s.expected = s.expected.value_or(true) && *f.expected;
  s.first_ns = std::min(s.first_ns, ts_boot_ns);
  s.last_ns = std::max(s.last_ns, ts_boot_ns);
  return s;
}

void FlowTable::log_summaries(uint64_t now_boot_ns) {
  summary_since_ns_ = now_boot_ns;
  static constexpr std::array<size_t, kConnectResultCount> kSorted = {3, 4, 0, 1, 2};  // denied error ok refused timeout
  for (const auto& [k, s] : summaries_) {
    const Process& p = *s.proc;
    std::string line = new_line();
    JsonWriter w(line);
    head(w, now_boot_ns);
    if (!k.destination.empty() || k.port) {
      w.open("destination");
      if (!k.destination.empty()) w.str("address", k.destination);
      if (!s.name.empty()) w.str("domain", s.name);
      if (s.addresses.size() == 1) w.str("ip", *s.addresses.begin());
      if (k.port && !k.inbound) w.num("port", k.port);
      if (!s.name.empty()) w.str("registered_domain", registrable_domain(s.name));
      w.close();
    }
    w.members(ecs_.ecs).open("egressd");
    if (p.cgroup_id) w.open("cgroup").num("id", p.cgroup_id).close();
    if (s.expected || !s.name.empty()) {
      w.open("destination");
      if (s.expected) w.boolean("expected", *s.expected);
      if (!s.name.empty()) w.str("name_source", source_name(static_cast<int>(s.source)));
      w.close();
    }
    process_flags(w, p);
    uint64_t attempts = 0;
    for (uint64_t n : s.results) attempts += n;
    w.open("summary").num("addresses", s.addresses.size()).num("connections", attempts).num("flows", s.flows);
    w.open("results");
    for (size_t r : kSorted)
      if (s.results[r]) w.num(kConnectResults[r], s.results[r]);
    w.close();
    w.num("sends", s.sends).num("wire_bytes", s.wire_bytes).num("wire_packets", s.wire_packets).close();
    tool_member(w, p);
    w.close();
    w.open("event")
        .str("action", "flow-summary")
        .strings("category", {"network"})
        .num("duration", s.last_ns - s.first_ns)
        .str("end", iso8601(d_.clock.to_wall_ns(s.last_ns)))
        .str("kind", "event")
        .str("module", "egressd")
        .str("start", iso8601(d_.clock.to_wall_ns(s.first_ns)))
        .strings("type", {"connection", "info"})
        .close();
    w.members(ecs_.host);
    network_object(w, s.dst, k.family, k.type, k.protocol, k.inbound);
    process_object(w, p, 0);
    source_object(w, s.bytes, k.inbound, k.port);
    tail(w, p);
    write_line(std::move(line));
  }
  summaries_.clear();
}

}  // namespace egressd
