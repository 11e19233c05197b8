// Joins what the kernel counted with who sent it and where to, and turns it
// into log events and metric totals. A flow is one socket's bytes from its
// owner to its connected destination (the "primary" flow, counted in
// sk_storage), or the bytes one sender sent through one socket to one
// destination when that is not the primary (unconnected UDP, raw, packet,
// inherited descriptors: counted in the flow_extra map).
//
// Flows are named by the best evidence: the target of an HTTP CONNECT, then
// the TLS server name (or the Host of plain HTTP), then the DNS answer the
// process itself received, then the address. A TCP flow's name is settled at
// its first payload (or its close, or a second after it connected), and only
// then are its series, its expected-destination verdict and its
// connection-attempted event decided, so every output agrees on the name.
// A UDP flow begins at its first send: a UDP connect that never sends
// (getaddrinfo choosing a source address) is counted apart, not logged.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "dns_names.h"
#include "ecs.h"
#include "egress_counters.h"
#include "event_decoder.h"
#include "event_sink.h"
#include "events.h"
#include "counted_ledger.h"
#include "process_table.h"
#include "tool_matcher.h"

namespace egressd {

class JsonWriter;

// What the destination label of the metrics holds for named flows.
enum class DestinationLabel { kName, kRegisteredDomain, kAddress };

struct FlowTableDeps {
  ProcessTable& procs;
  EgressCounters& counters;
  EventSink& log;
  const HostInfo& host;
  const Clock& clock;
  const ToolMatcher* tools = nullptr;
  DestinationLabel destination_label = DestinationLabel::kName;
  // flows.log: summary. 0: a line per connection and per flow (the default).
  // Otherwise connection attempts, and flows that end within this long of
  // their start with no flow-updated line, are counted per (process,
  // destination, port, transport) and logged as one flow-summary event per
  // interval. Metrics are the same either way.
  uint64_t summary_interval_ns = 0;
};

class FlowTable {
 public:
  explicit FlowTable(FlowTableDeps deps) : d_(deps), ecs_(EcsConstants::of(deps.host)) {}

  void on_connect(const connect_event& ev);
  void on_connect_result(const connect_result_event& ev);
  void on_close(const sock_close_event& ev);
  void on_payload(const PayloadRecord& rec);

  // A snapshot of the live sockets (a socket may appear more than once).
  void on_live_sockets(const std::vector<sock_flow>& socks);
  // Every entry of flow_extra; returns the keys whose flow ended, which the
  // caller deletes from the kernel map.
  std::vector<flow_key> on_extra_flows(const std::vector<std::pair<flow_key, flow_counters>>& entries);

  // Settles names that waited long enough; flow-updated for flows whose
  // count changed and that were last logged at least interval_ns ago.
  void emit_updates(uint64_t now_boot_ns, uint64_t interval_ns);
  // flow-updated with the final count for every open flow (shutdown).
  void flush_all(uint64_t now_boot_ns, const char* reason);

  // The agent adopted pinned kernel state (bpf_programs.h adopted()): a
  // flow whose kernel state began before boot_ns was counted into the
  // metrics of the agent before this one (up to its end) and is logged with
  // its whole count, but this agent's metrics count only what it sends from
  // the first time they see it. Metrics are never counted twice; what the
  // earlier agent had not exported yet is not in them.
  void adopt_counts_before(uint64_t boot_ns) { adopted_before_ns_ = boot_ns; }
  // With the ledger of what each flow has added to the metrics (pinned), a
  // flow of the earlier agent starts from what it counted (0 when it
  // counted nothing), and each count is written there as it is added.
  void set_ledger(CountedLedger* ledger) { ledger_ = ledger; }
  // Whether a ledger entry belongs to a flow open here (or one left for the
  // next read: wait_for_images).
  bool has_flow(const CountedKey& key) const;

  // The series open flows write to: kept however long they are idle.
  std::vector<SeriesKey> live_series() const;

  bool extra_ends_pending() const { return !closed_with_extra_.empty(); }
  // A map read can be newer than the ring buffer read before it: a process
  // may have exec'd and sent between the two, and its exec record is then
  // still in the ring. With this set, a new flow whose sender's image the
  // process table does not know yet waits for the next read (once), instead
  // of being charged to the image before the exec. Off for the last read.
  void wait_for_images(bool on) { wait_for_images_ = on; }
  size_t open_flows() const { return primary_.size() + extra_.size(); }
  uint64_t results_without_attempt() const { return results_without_attempt_; }
  uint64_t waited_for_image() const { return waited_for_image_; }
  const std::map<std::string, uint64_t>& parse_failures() const { return parse_failures_; }
  // UDP sockets connected and closed (or connected again) without a send,
  // per tool: getaddrinfo's source-address probes. Not connections.
  const std::map<std::string, uint64_t>& unsent_udp_connects() const { return unsent_udp_connects_; }

  static constexpr uint64_t kNameWaitNs = 1'000'000'000ULL;

 private:
  enum class NameSource { kAddress = 0, kDns = 1, kHttp = 2, kSni = 3, kConnect = 4 };
  struct Attempt {
    std::shared_ptr<const Process> proc;
    connect_event ev;
  };
  struct Flow {
    std::string id;
    std::shared_ptr<const Process> proc;
    flow_addr dst{};
    std::string addr;  // dst formatted, "" when it has no address
    uint16_t family = 0, type = 0, protocol = 0;
    uint64_t cookie = 0;
    uint64_t bytes = 0, sends = 0, wire_bytes = 0, wire_packets = 0;
    uint64_t start_ns = 0;
    uint64_t logged_bytes = 0, logged_ns = 0;
    bool connected = false;
    // A connection a local server accepted: dst is its client, local_port
    // the port it accepted on. Logged as ingress, counted apart from egress.
    bool inbound = false;
    uint16_t local_port = 0;
    // Naming.
    std::string name;
    NameSource source = NameSource::kAddress;
    std::string sni, proxy_target;
    bool named = false;  // series and verdict settled
    uint64_t name_deadline_ns = 0;
    std::optional<Attempt> attempt;  // its connect, logged once named
    std::optional<connect_result_event> result;
    std::optional<bool> expected;  // for tools with an expected list
    SeriesKey series;
    bool updated = false;  // a flow-updated line was written for it
    // A flow of flow_extra: its key there (for the ledger).
    bool extra = false;
    flow_key key{};
    LedgerPosition ledger;  // last.connection: 1 + its connect result, once counted
    bool ledger_pending = false;  // counted, not yet in the ledger (within apply())
  };
  // flows.log: summary: what one (process, destination, port, transport)
  // did in the current interval.
  struct SummaryKey {
    ProcKey proc;
    std::string destination;  // the name, or the address when unnamed
    uint16_t port = 0;        // inbound: the port the server accepted on
    bool inbound = false;
    uint16_t family = 0, type = 0, protocol = 0;
    auto operator<=>(const SummaryKey&) const = default;
  };
  struct Summary {
    std::shared_ptr<const Process> proc;
    flow_addr dst{};  // the first address seen
    std::set<std::string> addresses;  // distinct, counted up to kSummaryAddresses
    std::string name;
    NameSource source = NameSource::kAddress;
    std::optional<bool> expected;
    std::array<uint64_t, kConnectResultCount> results{};
    uint64_t flows = 0, bytes = 0, sends = 0, wire_bytes = 0, wire_packets = 0;
    uint64_t first_ns = 0, last_ns = 0;
  };
  static constexpr size_t kSummaryAddresses = 64;
  using ExtraKey = std::array<uint8_t, sizeof(flow_key)>;

  Flow make_flow(std::shared_ptr<const Process> proc, const flow_addr& dst, uint16_t family,
                 uint16_t type, uint16_t protocol, uint64_t cookie, uint64_t start_ns);
  void set_name(Flow& f, const std::string& name, NameSource source);
  void settle_name(Flow& f);
  void apply(Flow& f, uint64_t bytes, uint64_t sends, uint64_t wire_bytes, uint64_t wire_packets);
  static CountedKey ledger_key(const Flow& f);
  void record(Flow& f);
  void take_over(Flow& f, const Counted& at_first_sight);
  void resume_connection(Flow& f, const sock_flow& s);
  template <typename Key>
  bool wait_for_image(const proc_ident& sender, std::set<Key>& waited, const std::type_identity_t<Key>& key);
  void log_flow(const Flow& f, const char* action, const char* type, uint64_t ts_boot_ns,
                const char* reason);
  void log_connection(Flow& f);
  std::string new_line() const;
  void write_line(std::string line);
  void head(JsonWriter& w, uint64_t ts_boot_ns) const;
  void destination_object(JsonWriter& w, const Flow& f) const;
  void egressd_head(JsonWriter& w, const Flow& f, const Process& p, const char* connection_result) const;
  void egressd_tail(JsonWriter& w, const Flow& f, const Process& p) const;
  void tool_member(JsonWriter& w, const Process& p) const;
  void process_object(JsonWriter& w, const Process& p, uint32_t tid) const;
  void tail(JsonWriter& w, const Process& p) const;
  // A flow's end: a flow-ended line, or its share of a summary.
  void end_flow(const Flow& f, uint64_t ts_boot_ns, const char* reason);
  Summary& summary_for(const Flow& f, uint64_t ts_boot_ns);
  void log_summaries(uint64_t now_boot_ns);
  void network_object(JsonWriter& w, const flow_addr& dst, uint16_t family, uint16_t type,
                      uint16_t protocol, bool inbound) const;
  void source_object(JsonWriter& w, uint64_t bytes, bool inbound, uint16_t local_port) const;
  void process_flags(JsonWriter& w, const Process& p) const;
  bool is_inbound(uint64_t cookie) const;
  Flow& primary_for(const sock_flow& s);
  void on_dns(const PayloadRecord& rec, bool answer);
  void on_first_bytes(const PayloadRecord& rec);

  FlowTableDeps d_;
  EcsConstants ecs_;
  DnsNames dns_;
  std::map<SummaryKey, Summary> summaries_;
  uint64_t summary_since_ns_ = 0;  // start of the current summary interval
  size_t line_hint_ = 1280;        // the capacity a new event line starts with
  std::map<uint64_t, Flow> primary_;
  std::map<ExtraKey, Flow> extra_;
  std::map<uint64_t, Attempt> attempts_;
  std::map<uint64_t, proc_ident> closed_with_extra_;  // cookie -> its owner
  bool wait_for_images_ = false;
  bool in_apply_ = false;
  std::set<uint64_t> waited_sockets_;  // new sockets left for the next read, once
  std::set<ExtraKey> waited_extra_;
  uint64_t waited_for_image_ = 0;     // reads left for later, in all
  std::set<uint64_t> live_cookies_;
  // Accepted sockets among the live ones and those closed since the last
  // poll, for the flows of their other senders.
  std::set<uint64_t> inbound_live_, inbound_closed_;
  uint64_t results_without_attempt_ = 0;
  uint64_t adopted_before_ns_ = 0;
  CountedLedger* ledger_ = nullptr;
  std::map<std::string, uint64_t> parse_failures_;
  std::map<std::string, uint64_t> unsent_udp_connects_;
};

// Resolver traffic (port 53): counted as bytes and named by its questions
// (dns-query events), never a connection nor an unexpected destination.
bool is_dns_flow(const flow_addr& dst, uint16_t protocol);

// Index into kConnectResults for a kernel connect_result value.
size_t connect_result_index(uint32_t result);

}  // namespace egressd
