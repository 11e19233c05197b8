#include "metrics.h"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include "metric_catalog.h"

namespace egressd {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string_view name) {
  for (const auto& spec : kMetricCatalog) {
    if (spec.name == name)
      return MetricFamily{std::string(spec.name), std::string(spec.help),
                          spec.kind == MetricKind::kCounter ? MetricType::Counter : MetricType::Gauge,
                          {}};
  }
  throw std::logic_error(fmt::format("metric {} is not in the catalog", name));
}

void add(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

std::vector<ClientMetric::Label> flow_labels(const SeriesKey& k) {
  return {{"tool", k.tool}, {"binary", k.binary}, {"destination", k.destination},
          {"port", k.port}, {"transport", k.transport}};
}

MetricFamily by_label(std::string_view name, const char* label,
                      const std::map<std::string, uint64_t>& values) {
  MetricFamily f = family(name);
  for (const auto& [k, v] : values) add(f, {{label, k}}, double(v));
  return f;
}

MetricFamily single(std::string_view name, uint64_t value) {
  MetricFamily f = family(name);
  add(f, {}, double(value));
  return f;
}

}  // namespace

std::vector<MetricFamily> AgentCollector::Collect() const {
  const auto t0 = std::chrono::steady_clock::now();
  auto series = counters_.published();
  MetricFamily bytes = family("egressd_sent_bytes_total");
  MetricFamily calls = family("egressd_send_calls_total");
  MetricFamily wire = family("egressd_wire_sent_bytes_total");
  MetricFamily packets = family("egressd_wire_sent_packets_total");
  MetricFamily conns = family("egressd_connections_total");
  MetricFamily unexpected = family("egressd_unexpected_flows_total");
  MetricFamily dns = family("egressd_dns_queries_total");
  MetricFamily inbound = family("egressd_inbound_sent_bytes_total");
  for (const auto& [key, t] : series) {
    if (key.inbound) {
      if (t.sends || t.sent_bytes)
        add(inbound, {{"tool", key.tool}, {"binary", key.binary}, {"port", key.port}, {"transport", key.transport}},
            double(t.sent_bytes));
      continue;
    }
    auto labels = flow_labels(key);
    if (t.sends || t.sent_bytes) {
      add(bytes, labels, double(t.sent_bytes));
      add(calls, labels, double(t.sends));
    }
    if (t.wire_packets) {
      add(wire, labels, double(t.wire_bytes));
      add(packets, labels, double(t.wire_packets));
    }
    if (t.unexpected_flows) add(unexpected, labels, double(t.unexpected_flows));
    if (t.dns_queries) add(dns, labels, double(t.dns_queries));
    for (size_t r = 0; r < kConnectResultCount; ++r) {
      if (!t.connections[r]) continue;
      auto l = labels;
      l.push_back({"result", kConnectResults[r]});
      add(conns, std::move(l), double(t.connections[r]));
    }
  }
  MetricFamily build = family("egressd_build_info");
  add(build, {{"version", version_}}, 1);

  AgentHealth h = health_();
  std::vector<MetricFamily> out = {std::move(bytes), std::move(calls), std::move(wire),
                                   std::move(packets), std::move(conns), std::move(unexpected),
                                   std::move(dns), std::move(inbound), std::move(build)};
  MetricFamily hooks = family("egressd_kernel_hook_info");
  for (const auto& [job, hook] : h.hooks) add(hooks, {{"job", job}, {"hook", hook}}, 1);
  out.push_back(std::move(hooks));
  MetricFamily refused = family("egressd_kernel_hook_refused_info");
  for (const auto& [job, line] : h.refused_hooks) {
    // "hook (program): reason": the reason is the verifier's line, cut to
    // keep the label short.
    const auto colon = line.find("): ");
    std::string hook = colon == std::string::npos ? line : line.substr(0, colon + 1);
    std::string reason = colon == std::string::npos ? "" : line.substr(colon + 3, 160);
    add(refused, {{"job", job}, {"hook", hook}, {"reason", reason}}, 1);
  }
  out.push_back(std::move(refused));
  out.push_back(by_label("egressd_parse_failures_total", "parser", h.parse_failures));
  out.push_back(by_label("egressd_udp_connects_unsent_total", "tool", h.unsent_udp_connects));
  out.push_back(by_label("egressd_events_lost_total", "reason", h.events_lost));
  out.push_back(by_label("egressd_kernel_map_full_total", "map", h.map_full));
  out.push_back(by_label("egressd_truncated_total", "field", h.truncated));
  out.push_back(single("egressd_kernel_read_failures_total", h.kernel_read_failures));
  out.push_back(by_label("egressd_ringbuf_events_total", "type", h.ring_events));
  out.push_back(single("egressd_open_flows", h.open_flows));
  out.push_back(single("egressd_processes", h.processes));
  out.push_back(single("egressd_process_map_entries", h.process_map_entries));
  out.push_back(single("egressd_process_map_capacity", h.process_map_capacity));
  out.push_back(single("egressd_flow_map_entries", h.flow_map_entries));
  out.push_back(single("egressd_flow_map_capacity", h.flow_map_capacity));
  MetricFamily runs = family("egressd_bpf_program_runs_total");
  MetricFamily run_time = family("egressd_bpf_program_run_seconds_total");
  for (const auto& p : h.programs) {
    add(runs, {{"program", p.name}}, double(p.runs));
    add(run_time, {{"program", p.name}}, double(p.run_ns) / 1e9);
  }
  out.push_back(std::move(runs));
  out.push_back(std::move(run_time));
  out.push_back(single("egressd_log_lines_total", h.log_lines));
  out.push_back(single("egressd_log_write_failures_total", h.log_write_failures));
  out.push_back(single("egressd_log_dropped_total", h.log_dropped));
  out.push_back(single("egressd_log_reopened_total", h.log_reopens));
  out.push_back(single("egressd_clock_steps_total", h.clock_steps));
  out.push_back(by_label("egressd_checkpoint_failures_total", "part",
                         {{"totals", h.checkpoint_failures}, {"ledger", h.ledger_write_failures}, {"processes", h.process_record_failures}}));
  {
    std::map<std::string, uint64_t> states;
    for (const char* s : {"off", "unavailable", "new", "adopted", "handed-over", "discarded"}) states[s] = s == h.pinned_state;
    out.push_back(by_label("egressd_pinned_state_info", "state", states));
    out.push_back(single("egressd_pinned_discarded_flows", h.pinned_discarded_flows));
  }
  out.push_back(single("egressd_series", series.size()));
  out.push_back(single("egressd_series_folded_total", h.series_folded));
  out.push_back(single("egressd_series_expired_total", h.series_expired));
  MetricFamily rejected = family("egressd_metrics_connections_rejected_total");
  for (size_t r = 0; r < kRejectionReasons.size(); ++r)
    add(rejected, {{"reason", std::string(kRejectionReasons[r])}}, double(rejections_.get(Rejection(r))));
  out.push_back(std::move(rejected));
  MetricFamily scrape = family("egressd_scrape_duration_seconds");
  add(scrape, {}, last_scrape_seconds_.load());
  out.push_back(std::move(scrape));
  last_scrape_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

std::pair<std::string, uint16_t> parse_host_port(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
    throw std::invalid_argument(fmt::format("'{}' is not HOST:PORT", address));
  std::string host = address.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port_text = address.substr(colon + 1);
  if (port_text.find_first_not_of("0123456789") != std::string::npos || port_text.size() > 5 ||
      std::stoul(port_text) > 65535)
    throw std::invalid_argument(fmt::format("'{}': port must be 0-65535", address));
  return {host, static_cast<uint16_t>(std::stoul(port_text))};
}

namespace {

std::string basic_authorization(const BasicAuth& auth) {
  const std::string plain = auth.username + ":" + auth.password;
  std::string b64(4 * ((plain.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                                reinterpret_cast<const unsigned char*>(plain.data()), static_cast<int>(plain.size()));
  b64.resize(static_cast<size_t>(n));
  return "Basic " + b64;
}

// In time that does not depend on where the first difference is.
bool same_secret(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

HttpResponse text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace

MetricsServer::MetricsServer(const std::string& address, std::shared_ptr<AgentCollector> collector,
                             const BasicAuth& auth, std::function<bool()> healthy, HttpServerLimits limits)
    : collector_(std::move(collector)),
      expected_authorization_(auth.password.empty() ? "" : basic_authorization(auth)),
      healthy_(std::move(healthy)) {
  auto [host, port] = parse_host_port(address);
  try {
    server_ = std::make_unique<HttpServer>(
        host, port, [this](const RequestHead& r) { return serve(r); }, collector_->connection_rejections(), limits);
  } catch (const std::system_error& e) {
    if (e.code().value() == EADDRINUSE || e.code().value() == EADDRNOTAVAIL)
      throw std::runtime_error(fmt::format(
          "cannot serve metrics on {}: address in use or not local (choose another with --metrics-addr)", address));
    throw std::runtime_error(fmt::format("cannot serve metrics on {}: {}", address, e.what()));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(fmt::format("cannot serve metrics on {}: {}", address, e.what()));
  }
  const bool v6 = host.find(':') != std::string::npos;
  bound_ = v6 ? fmt::format("[{}]:{}", host, server_->port()) : fmt::format("{}:{}", host, server_->port());
}

MetricsServer::~MetricsServer() = default;

HttpResponse MetricsServer::serve(const RequestHead& request) const {
  if (request.path == "/healthz") {
    const bool ok = healthy_ && healthy_();
    return text(ok ? 200 : 503, ok ? "ok\n" : "event loop stalled\n");
  }
  if (request.path != "/metrics") return text(404, "Not Found\n");
  if (!expected_authorization_.empty() && !same_secret(request.authorization, expected_authorization_)) {
    HttpResponse r = text(401, "Unauthorized\n");
    r.extra_headers = "WWW-Authenticate: Basic realm=\"egressd\"\r\n";
    return r;
  }
  HttpResponse r = text(200, prometheus::TextSerializer().Serialize(collector_->Collect()));
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  return r;
}

}  // namespace egressd
