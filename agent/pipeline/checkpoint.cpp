#include "checkpoint.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace egressd {

namespace {

nlohmann::json key_json(const SeriesKey& k) {
  return {k.tool, k.binary, k.destination, k.port, k.transport, k.inbound};
}

SeriesKey key_of(const nlohmann::json& k) {
  if (!k.is_array() || k.size() != 6) throw std::out_of_range("series key of the wrong size");
  return SeriesKey{k[0].get<std::string>(), k[1].get<std::string>(), k[2].get<std::string>(),
                   k[3].get<std::string>(), k[4].get<std::string>(), k[5].get<bool>()};
}

}  // namespace

std::string encode_series_key(const SeriesKey& k) { return key_json(k).dump(); }

std::optional<SeriesKey> decode_series_key(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  try {
    return key_of(j);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string encode_checkpoint(const Checkpoint& c) {
  nlohmann::json series = nlohmann::json::array();
  for (const auto& [k, t] : c.series) {
    nlohmann::json counts = {t.sent_bytes, t.wire_bytes, t.wire_packets, t.sends};
    for (uint64_t n : t.connections) counts.push_back(n);
    counts.push_back(t.unexpected_flows);
    counts.push_back(t.dns_queries);
    series.push_back({{"k", key_json(k)}, {"t", counts}});
  }
  return nlohmann::json{{"version", kCheckpointVersion}, {"written_boot_ns", c.written_boot_ns}, {"series", series}}
      .dump();
}

std::optional<Checkpoint> decode_checkpoint(std::string_view blob, std::string* why) {
  auto j = nlohmann::json::parse(blob, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    *why = "not JSON";
    return std::nullopt;
  }
  if (j.value("version", 0) != kCheckpointVersion) {
    *why = fmt::format("checkpoint version {}, this build reads {}", j.value("version", 0), kCheckpointVersion);
    return std::nullopt;
  }
  Checkpoint c;
  try {
    c.written_boot_ns = j.at("written_boot_ns").get<uint64_t>();
    for (const auto& s : j.at("series")) {
      const auto& k = s.at("k");
      const auto& t = s.at("t");
      constexpr size_t kCounts = 4 + kConnectResultCount + 2;
      if (t.size() != kCounts) throw std::out_of_range("series entry of the wrong size");
      SeriesKey key = key_of(k);
      SeriesTotals tot;
      tot.sent_bytes = t[0].get<uint64_t>();
      tot.wire_bytes = t[1].get<uint64_t>();
      tot.wire_packets = t[2].get<uint64_t>();
      tot.sends = t[3].get<uint64_t>();
      for (size_t i = 0; i < kConnectResultCount; ++i) tot.connections[i] = t[4 + i].get<uint64_t>();
      tot.unexpected_flows = t[4 + kConnectResultCount].get<uint64_t>();
      tot.dns_queries = t[5 + kConnectResultCount].get<uint64_t>();
      c.series.emplace_back(std::move(key), tot);
    }
  } catch (const std::exception& e) {
    *why = fmt::format("malformed checkpoint: {}", e.what());
    return std::nullopt;
  }
  return c;
}

}  // namespace egressd
