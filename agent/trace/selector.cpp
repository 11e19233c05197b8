// Which processes a trace follows, and which of their events it shows.
#include <fmt/format.h>

#include <algorithm>

#include "errors.h"
#include "text.h"
#include "trace.h"

namespace egressd {

ProcessSelector::ProcessSelector(const TraceOptions& o, const std::vector<ToolSpec>& tools) : o_(o) {
  for (const auto& t : o.tools) {
    bool known = std::any_of(tools.begin(), tools.end(), [&](const ToolSpec& s) { return s.name == t; });
    if (!known) {
      std::string names;
      for (const auto& s : tools) names += (names.empty() ? "" : ", ") + s.name;
      throw UsageError(fmt::format("--tool {}: no such tool (known: {})", t, names));
    }
  }
  for (const auto& lists : {&o.exes, &o.comms, &o.cgroups})
    for (const auto& v : *lists)
      if (v.empty()) throw UsageError("an empty selector matches nothing");
  pids_.insert(o.pids.begin(), o.pids.end());
  all_ = o.tools.empty() && o.exes.empty() && o.pids.empty() && o.comms.empty() && o.cgroups.empty() &&
         o.command.empty();
}

bool ProcessSelector::decides_at_exec() const {
  return !o_.tools.empty() || !o_.exes.empty() || !o_.comms.empty() || !o_.cgroups.empty();
}

bool ProcessSelector::matches(const Process& p, const std::string& cgroup_path) const {
  if (all_) return true;
  if (pids_.count(p.key.tgid)) return true;
  for (const auto& t : o_.tools)
    if (p.tool == t) return true;
  for (const auto& e : o_.exes) {
    if (e.find('/') == std::string::npos) {  // a bare name: the file name of either path
      if (glob_match(e, basename_of(p.exe)) || glob_match(e, basename_of(p.filename))) return true;
    } else if (glob_match(e, p.exe) || glob_match(e, p.filename)) {
      return true;
    }
  }
  for (const auto& c : o_.comms)
    if (glob_match(c, p.comm)) return true;
  if (!cgroup_path.empty())
    for (const auto& c : o_.cgroups)
      if (has_glob(c) ? glob_match(c, cgroup_path) : cgroup_path.find(c) != std::string::npos) return true;
  return false;
}

std::string ProcessSelector::describe(const Redactor& redactor) const {
  std::vector<std::string> parts;
  auto add = [&](const char* what, const auto& values) {
    for (const auto& v : values) parts.push_back(fmt::format("{} {}", what, v));
  };
  add("tool", o_.tools);
  add("executable", o_.exes);
  add("pid", o_.pids);
  add("comm", o_.comms);
  add("cgroup", o_.cgroups);
  if (!o_.command.empty()) {
    std::string cmd;
    for (const auto& a : redactor.redact_argv(o_.command)) cmd += (cmd.empty() ? "" : " ") + a;
    parts.push_back(fmt::format("command '{}'", cmd));
  }
  if (parts.empty()) return "every process";
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

DestinationFilter::DestinationFilter(const std::vector<std::string>& destinations,
                                     const std::vector<uint16_t>& ports)
    : ports_(ports.begin(), ports.end()) {
  for (const auto& d : destinations) {
    if (auto c = Cidr::parse(d)) {
      cidrs_.push_back(*c);
      continue;
    }
    std::string name = d;
    if (name.rfind("*.", 0) == 0) name = name.substr(2);
    while (!name.empty() && name.back() == '.') name.pop_back();
    const bool valid = !name.empty() && name.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") ==
                                            std::string::npos;
    if (!valid) throw UsageError(fmt::format("--dest {}: not a CIDR, address or domain", d));
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    domains_.push_back(name);
  }
}

bool DestinationFilter::matches(const nlohmann::json& ev) const {
  using P = nlohmann::json::json_pointer;
  const bool dns = ev.value(P("/event/action"), std::string()) == "dns-query";
  if (!ports_.empty()) {
    const auto port = ev.value(P("/destination/port"), 0u);
    if (!ports_.count(static_cast<uint16_t>(port))) return false;
  }
  if (cidrs_.empty() && domains_.empty()) return true;
  // An address filter applies to where the packets went; a domain filter to
  // the destination's name, or to the name a DNS query asks for.
  if (!dns && !cidrs_.empty()) {
    const std::string ip = ev.value(P("/destination/ip"), std::string());
    flow_addr a{};
    if (auto c = Cidr::parse(ip)) {
      a.family = c->family;
      std::copy(c->addr.begin(), c->addr.end(), a.addr_be);
      for (const auto& cidr : cidrs_)
        if (cidr.contains(a)) return true;
    }
  }
  std::string name = dns ? ev.value(P("/dns/question/name"), std::string())
                         : ev.value(P("/destination/domain"), std::string());
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  while (!name.empty() && name.back() == '.') name.pop_back();
  for (const auto& d : domains_) {
    if (name == d) return true;
    if (name.size() > d.size() && name.compare(name.size() - d.size(), d.size(), d) == 0 &&
        name[name.size() - d.size() - 1] == '.')
      return true;
  }
  return false;
}

}  // namespace egressd
