// egressd trace's outputs: the live view's lines, and the summary as text,
// JSON and a self-contained HTML page with a timeline.
#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <tuple>

#include "ecs.h"
#include "trace.h"
#include "version.h"

namespace egressd {
namespace {

constexpr uint64_t kSecond = 1'000'000'000ULL;
constexpr size_t kMaxQueryTimes = 1000;  // marks per DNS question on the timeline
constexpr size_t kMaxTimelineRows = 40;

const char* kReset = "\033[0m";
const char* kBold = "\033[1m";
const char* kDim = "\033[2m";
const char* kRed = "\033[31m";
const char* kGreen = "\033[32m";
const char* kBlue = "\033[34m";
const char* kMagenta = "\033[35m";
const char* kCyan = "\033[36m";

std::string str(const nlohmann::json& j, const nlohmann::json::json_pointer& p) {
  if (!j.contains(p)) return "";
  const auto& v = j.at(p);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) return v.dump();
  return "";
}

uint64_t num(const nlohmann::json& j, const nlohmann::json::json_pointer& p) {
  if (!j.contains(p)) return 0;
  const auto& v = j.at(p);
  return v.is_number_unsigned() || v.is_number_integer() ? v.get<uint64_t>() : 0;
}

using P = nlohmann::json::json_pointer;

std::string binary_of(const nlohmann::json& ev) {
  std::string b = str(ev, P("/process/executable"));
  return b.empty() ? str(ev, P("/process/name")) : b;
}

// Fits s into width columns, marking a cut with '~'.
std::string fit(const std::string& s, size_t width) {
  if (s.size() <= width) return s;
  return s.substr(0, width - 1) + "~";
}

std::string clock_time(uint64_t wall_ns, bool millis) {
  time_t secs = static_cast<time_t>(wall_ns / kSecond);
  struct tm tm {};
  localtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  if (!millis) return buf;
  return fmt::format("{}.{:03}", buf, (wall_ns % kSecond) / 1'000'000);
}

std::string join(const std::set<std::string>& items, const char* sep) {
  std::string out;
  for (const auto& i : items) {
    if (!out.empty()) out += sep;
    out += i;
  }
  return out;
}

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string destination_text(const std::string& name, const std::string& address) {
  if (name.empty() || name == address) return address.empty() ? "-" : address;
  if (address.empty()) return name;
  return fmt::format("{} ({})", name, address);
}

std::string destination_key(const TraceSummary::Destination& d) {
  return fmt::format("{}|{}|{}|{}", d.name, d.address, d.port, d.transport);
}

// Timeline colours; the report test looks for kTcpColour in a screenshot.
constexpr const char* kTcpColour = "#1f6fb4";
constexpr const char* kUdpColour = "#e8771e";
constexpr const char* kOtherColour = "#7e57c2";
constexpr const char* kFailedColour = "#d62728";
constexpr const char* kDnsColour = "#2a9d3f";

const char* span_colour(const TraceSummary::FlowSpan& s) {
  if (!s.result.empty() && s.result != "ok") return kFailedColour;
  if (s.transport == "tcp") return kTcpColour;
  if (s.transport == "udp") return kUdpColour;
  return kOtherColour;
}

}  // namespace

uint64_t parse_iso8601_ns(const std::string& text) {
  struct tm tm {};
  unsigned frac_digits = 0;
  uint64_t frac = 0;
  const char* rest = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return 0;
  if (*rest == '.') {
    for (++rest; *rest >= '0' && *rest <= '9'; ++rest) {
      if (frac_digits < 9) {
        frac = frac * 10 + static_cast<uint64_t>(*rest - '0');
        ++frac_digits;
      }
    }
  }
  if (*rest != 'Z' || rest[1] != '\0') return 0;
  for (; frac_digits < 9; ++frac_digits) frac *= 10;
  time_t secs = timegm(&tm);
  if (secs < 0) return 0;
  return static_cast<uint64_t>(secs) * kSecond + frac;
}

void TraceSummary::add(const nlohmann::json& ev) {
  const std::string action = str(ev, P("/event/action"));
  const uint64_t ts = parse_iso8601_ns(str(ev, P("/@timestamp")));
  ++events_;
  if (action == "dns-query") {
    const std::string name = str(ev, P("/dns/question/name"));
    const std::string type = str(ev, P("/dns/question/type"));
    Query& q = queries_[{name, type}];
    q.name = name;
    q.type = type;
    ++q.count;
    if (!q.first_ns || ts < q.first_ns) q.first_ns = ts;
    q.last_ns = std::max(q.last_ns, ts);
    q.resolvers.insert(fmt::format("{}:{}", str(ev, P("/destination/ip")), num(ev, P("/destination/port"))));
    q.binaries.insert(binary_of(ev));
    if (q.times.size() < kMaxQueryTimes) q.times.push_back(ts);
    return;
  }
  if (action != "connection-attempted" && action != "flow-updated" && action != "flow-ended") return;
  const std::string id = str(ev, P("/egressd/flow/id"));
  if (id.empty()) return;
  Flow& f = flows_[id];
  f.key.name = str(ev, P("/destination/domain"));
  f.key.address = str(ev, P("/destination/ip"));
  f.key.port = static_cast<uint16_t>(num(ev, P("/destination/port")));
  f.key.transport = str(ev, P("/network/transport"));
  f.binary = binary_of(ev);
  uint64_t first = ts;
  if (action == "connection-attempted") {
    f.attempted = true;
    f.result = str(ev, P("/egressd/connection/result"));
  } else {
    f.bytes = num(ev, P("/source/bytes"));
    if (uint64_t start = parse_iso8601_ns(str(ev, P("/event/start")))) first = start;
  }
  if (first && (!f.first_ns || first < f.first_ns)) f.first_ns = first;
  f.last_ns = std::max(f.last_ns, ts);
}

std::vector<TraceSummary::Destination> TraceSummary::destinations() const {
  std::map<std::string, Destination> by_key;
  for (const auto& [_, f] : flows_) {
    Destination& d = by_key[destination_key(f.key)];
    if (d.transport.empty()) {
      d.name = f.key.name;
      d.address = f.key.address;
      d.port = f.key.port;
      d.transport = f.key.transport;
    }
    ++d.flows;
    if (f.attempted) {
      ++d.connections;
      if (f.result != "ok") ++d.failed;
    }
    d.bytes += f.bytes;
    if (f.first_ns && (!d.first_ns || f.first_ns < d.first_ns)) d.first_ns = f.first_ns;
    d.last_ns = std::max(d.last_ns, f.last_ns);
    if (!f.binary.empty()) d.binaries.insert(f.binary);
  }
  std::vector<Destination> out;
  for (auto& [_, d] : by_key) out.push_back(std::move(d));
  std::sort(out.begin(), out.end(), [](const Destination& a, const Destination& b) {
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    if (a.connections != b.connections) return a.connections > b.connections;
    return destination_key(a) < destination_key(b);
  });
  return out;
}

std::vector<TraceSummary::Query> TraceSummary::queries() const {
  std::vector<Query> out;
  for (const auto& [_, q] : queries_) out.push_back(q);
  std::sort(out.begin(), out.end(), [](const Query& a, const Query& b) {
    if (a.count != b.count) return a.count > b.count;
    return std::tie(a.name, a.type) < std::tie(b.name, b.type);
  });
  return out;
}

std::vector<TraceSummary::FlowSpan> TraceSummary::spans() const {
  std::vector<FlowSpan> out;
  for (const auto& [_, f] : flows_) {
    FlowSpan s;
    s.destination_key = destination_key(f.key);
    s.start_ns = f.first_ns;
    s.end_ns = std::max(f.first_ns, f.last_ns);
    s.bytes = f.bytes;
    s.transport = f.key.transport;
    s.result = f.result;
    out.push_back(s);
  }
  std::sort(out.begin(), out.end(),
            [](const FlowSpan& a, const FlowSpan& b) { return a.start_ns < b.start_ns; });
  return out;
}

nlohmann::json TraceSummary::to_json() const {
  nlohmann::json j;
  j["events"] = events_;
  if (start_ns_) j["start"] = iso8601(start_ns_);
  if (end_ns_) j["end"] = iso8601(end_ns_);
  j["destinations"] = nlohmann::json::array();
  for (const auto& d : destinations()) {
    nlohmann::json e;
    if (!d.name.empty()) e["name"] = d.name;
    e["address"] = d.address;
    e["port"] = d.port;
    e["transport"] = d.transport;
    e["connections"] = d.connections;
    e["failed_connections"] = d.failed;
    e["flows"] = d.flows;
    e["bytes"] = d.bytes;
    if (d.first_ns) e["first_seen"] = iso8601(d.first_ns);
    if (d.last_ns) e["last_seen"] = iso8601(d.last_ns);
    e["binaries"] = d.binaries;
    j["destinations"].push_back(std::move(e));
  }
  j["dns_queries"] = nlohmann::json::array();
  for (const auto& q : queries()) {
    j["dns_queries"].push_back({{"name", q.name},
                                {"type", q.type},
                                {"count", q.count},
                                {"first_seen", iso8601(q.first_ns)},
                                {"last_seen", iso8601(q.last_ns)},
                                {"resolvers", q.resolvers},
                                {"binaries", q.binaries}});
  }
  return j;
}

std::string TraceSummary::text(bool color) const {
  const char* b = color ? kBold : "";
  const char* r = color ? kReset : "";
  const auto dests = destinations();
  const auto qs = queries();
  std::string out;
  uint64_t total = 0, conns = 0;
  for (const auto& d : dests) {
    total += d.bytes;
    conns += d.connections;
  }
  out += fmt::format("\n{}Summary{}: {} destinations, {} connections, {} bytes sent", b, r, dests.size(),
                     conns, total);
  if (start_ns_ && end_ns_ >= start_ns_)
    out += fmt::format(", {} – {} ({:.1f} s)", clock_time(start_ns_, false), clock_time(end_ns_, false),
                       double(end_ns_ - start_ns_) / kSecond);
  out += "\n";
  if (!dests.empty()) {
    out += fmt::format("{}{:<40} {:>5} {:<9} {:>5} {:>5} {:>12} {:<8} {:<8} {}{}\n", b, "DESTINATION", "PORT",
                       "TRANSPORT", "CONN", "FAIL", "BYTES", "FIRST", "LAST", "BINARIES", r);
    for (const auto& d : dests) {
      out += fmt::format("{:<40} {:>5} {:<9} {:>5} {:>5} {:>12} {:<8} {:<8} {}\n",
                         fit(destination_text(d.name, d.address), 40), d.port, d.transport, d.connections,
                         d.failed, d.bytes, d.first_ns ? clock_time(d.first_ns, false) : "-",
                         d.last_ns ? clock_time(d.last_ns, false) : "-", join(d.binaries, ", "));
    }
  }
  if (!qs.empty()) {
    out += fmt::format("\n{}{:<40} {:<6} {:>5} {:<22} {}{}\n", b, "DNS QUESTION", "TYPE", "COUNT", "RESOLVERS",
                       "BINARIES", r);
    for (const auto& q : qs)
      out += fmt::format("{:<40} {:<6} {:>5} {:<22} {}\n", fit(q.name, 40), q.type, q.count,
                         join(q.resolvers, ", "), join(q.binaries, ", "));
  }
  if (dests.empty() && qs.empty()) out += "nothing was sent by the followed processes\n";
  return out;
}

std::string TraceSummary::html(const std::string& title) const {
  const auto dests = destinations();
  const auto qs = queries();
  const auto all_spans = spans();
  uint64_t t0 = start_ns_, t1 = end_ns_;
  for (const auto& s : all_spans) {
    if (s.start_ns && (!t0 || s.start_ns < t0)) t0 = s.start_ns;
    t1 = std::max(t1, s.end_ns);
  }
  for (const auto& q : qs) {
    if (q.first_ns && (!t0 || q.first_ns < t0)) t0 = q.first_ns;
    t1 = std::max(t1, q.last_ns);
  }
  if (t1 <= t0) t1 = t0 + kSecond;

  // Timeline: one row per destination (the busiest first), one for DNS.
  constexpr int kLabelW = 300, kPlotW = 760, kRowH = 24, kTop = 30;
  std::map<std::string, int> row_of;
  std::vector<std::string> labels;
  for (const auto& d : dests) {
    if (row_of.size() >= kMaxTimelineRows) break;
    row_of[destination_key(d)] = static_cast<int>(labels.size());
    labels.push_back(fmt::format("{} :{} {}", destination_text(d.name, d.address), d.port, d.transport));
  }
  const int dns_row = qs.empty() ? -1 : static_cast<int>(labels.size());
  if (dns_row >= 0) labels.push_back("DNS queries");
  const int height = kTop + static_cast<int>(labels.size()) * kRowH + 30;
  auto x_of = [&](uint64_t ns) {
    ns = std::clamp(ns, t0, t1);
    return kLabelW + static_cast<double>(ns - t0) / static_cast<double>(t1 - t0) * kPlotW;
  };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" "
      "aria-label=\"timeline\" font-family=\"sans-serif\" font-size=\"12\">\n",
      kLabelW + kPlotW + 50, height);
  for (int i = 0; i <= 4; ++i) {
    const uint64_t ns = t0 + (t1 - t0) * static_cast<uint64_t>(i) / 4;
    const double x = x_of(ns);
    svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"#ddd\"/>\n", x, kTop - 6, x,
                       height - 24);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}</text>\n", x,
                       height - 8, clock_time(ns, t1 - t0 < 60 * kSecond || i == 0 || i == 4));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    const int y = kTop + static_cast<int>(i) * kRowH;
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#222\">{}</text>\n", kLabelW - 8,
                       y + 15, html_escape(fit(labels[i], 44)));
  }
  for (const auto& s : all_spans) {
    auto it = row_of.find(s.destination_key);
    if (it == row_of.end()) continue;
    const double x = x_of(s.start_ns);
    const double w = std::max(6.0, x_of(s.end_ns) - x);
    svg += fmt::format(
        "<rect x=\"{:.0f}\" y=\"{}\" width=\"{:.0f}\" height=\"16\" shape-rendering=\"crispEdges\" "
        "fill=\"{}\"><title>{} bytes, {}</title></rect>\n",
        x, kTop + it->second * kRowH + 2, w, span_colour(s), s.bytes, html_escape(s.result.empty() ? s.transport : s.result));
  }
  if (dns_row >= 0) {
    for (const auto& q : qs)
      for (uint64_t t : q.times)
        svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{}\" r=\"5\" fill=\"{}\"><title>{} {}</title></circle>\n",
                           x_of(t), kTop + dns_row * kRowH + 10, kDnsColour, html_escape(q.name), q.type);
  }
  svg += "</svg>\n";

  std::string rows;
  for (const auto& d : dests) {
    rows += fmt::format(
        "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td>"
        "<td class=n>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        html_escape(d.name.empty() ? "-" : d.name), html_escape(d.address), d.port, html_escape(d.transport),
        d.connections, d.failed, d.bytes, d.first_ns ? iso8601(d.first_ns) : "-",
        d.last_ns ? iso8601(d.last_ns) : "-", html_escape(join(d.binaries, ", ")));
  }
  std::string qrows;
  for (const auto& q : qs) {
    qrows += fmt::format("<tr><td>{}</td><td>{}</td><td class=n>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                         html_escape(q.name), html_escape(q.type), q.count, iso8601(q.first_ns),
                         html_escape(join(q.resolvers, ", ")), html_escape(join(q.binaries, ", ")));
  }
  uint64_t total = 0;
  for (const auto& d : dests) total += d.bytes;
  return fmt::format(R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>egressd trace: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }} td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 14px; vertical-align: middle; opacity: .6; }}
</style></head><body>
<h1>egressd trace: {title}</h1>
<p>{start} – {end}: {ndest} destinations, {total} bytes sent, {nq} DNS questions. Generated by egressd {version}.</p>
<h2>Timeline</h2>
<p class="legend"><span style="background:{tcp}"></span>TCP<span style="background:{udp}"></span>UDP<span style="background:{other}"></span>other<span style="background:{failed}"></span>failed connection<span style="background:{dns}; border-radius: 6px"></span>DNS query</p>
{svg}
<h2>Destinations</h2>
<table><tr><th>Name</th><th>Address</th><th>Port</th><th>Transport</th><th>Connections</th><th>Failed</th><th>Bytes sent</th><th>First seen</th><th>Last seen</th><th>Binaries</th></tr>
{rows}</table>
<h2>DNS questions</h2>
<table><tr><th>Name</th><th>Type</th><th>Count</th><th>First seen</th><th>Resolvers</th><th>Binaries</th></tr>
{qrows}</table>
</body></html>
)",
                     fmt::arg("title", html_escape(title)), fmt::arg("start", iso8601(t0)),
                     fmt::arg("end", iso8601(t1)), fmt::arg("ndest", dests.size()), fmt::arg("total", total),
                     fmt::arg("nq", qs.size()), fmt::arg("version", EGRESSD_VERSION),
                     fmt::arg("tcp", kTcpColour), fmt::arg("udp", kUdpColour), fmt::arg("other", kOtherColour),
                     fmt::arg("failed", kFailedColour), fmt::arg("dns", kDnsColour), fmt::arg("svg", svg),
                     fmt::arg("rows", rows), fmt::arg("qrows", qrows));
}

std::string trace_header(bool color) {
  return fmt::format("{}{:<12}  {:>7}  {:<16}  {:<7}  {:<5}  {:<40}  {:>5}  {:>10}  {}{}", color ? kBold : "", "TIME",
                     "PID", "PROCESS", "EVENT", "PROTO", "DESTINATION", "PORT", "BYTES", "DETAIL",
                     color ? kReset : "");
}

std::string trace_line(const nlohmann::json& ev, bool color) {
  const std::string action = str(ev, P("/event/action"));
  const uint64_t ts = parse_iso8601_ns(str(ev, P("/@timestamp")));
  std::string kind, dest, bytes, detail;
  const char* colour = "";
  std::string process = str(ev, P("/process/name"));
  if (process.empty()) process = str(ev, P("/process/title"));
  const uint64_t port = num(ev, P("/destination/port"));
  std::string proto = str(ev, P("/network/transport"));
  if (action == "dns-query") {
    kind = "dns";
    colour = kMagenta;
    dest = str(ev, P("/dns/question/name"));
    detail = fmt::format("{} via {}", str(ev, P("/dns/question/type")), str(ev, P("/destination/ip")));
  } else {
    dest = destination_text(str(ev, P("/destination/domain")), str(ev, P("/destination/ip")));
    if (action == "connection-attempted") {
      kind = "connect";
      detail = str(ev, P("/egressd/connection/result"));
      colour = detail == "ok" ? kGreen : kRed;
      if (std::string src = str(ev, P("/egressd/destination/name_source")); !src.empty() && src != "address")
        detail += fmt::format(" (name from {})", src);
    } else if (action == "flow-ended" || action == "flow-updated") {
      kind = action == "flow-ended" ? "end" : "update";
      colour = action == "flow-ended" ? kCyan : kBlue;
      const uint64_t b = num(ev, P("/source/bytes"));
      bytes = fmt::format("{}", b);
      detail = fmt::format("{:.2f} s", double(num(ev, P("/event/duration"))) / kSecond);
      if (action == "flow-updated") detail += ", still open";
    } else {
      kind = action;
    }
  }
  if (std::string tool = str(ev, P("/egressd/tool")); !tool.empty()) detail += fmt::format(" [{}]", tool);
  const char* on = color ? colour : "";
  const char* off = color && *colour ? kReset : "";
  const char* dim = color ? kDim : "";
  const char* dim_off = color ? kReset : "";
  return fmt::format("{}{:<12}{}  {:>7}  {:<16}  {}{:<7}{}  {:<5}  {:<40}  {:>5}  {:>10}  {}", dim,
                     ts ? clock_time(ts, true) : "-", dim_off, num(ev, P("/process/pid")), fit(process, 16), on,
                     kind, off, fit(proto, 5), fit(dest, 40), port ? std::to_string(port) : "", bytes, detail);
}

}  // namespace egressd
