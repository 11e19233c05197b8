#include <gtest/gtest.h>
#include <prometheus/check_names.h>
#include <prometheus/text_serializer.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "feature_probe.h"
#include "metric_catalog.h"
#include "metrics.h"
#include "temp_dir.h"

namespace egressd {
namespace {

TEST(MetricCatalog, NamesAreValidUniqueAndFollowConventions) {
  std::set<std::string_view> seen;
  for (const auto& m : kMetricCatalog) {
    EXPECT_TRUE(prometheus::CheckMetricName(std::string(m.name))) << m.name;
    EXPECT_TRUE(seen.insert(m.name).second) << "duplicate " << m.name;
    EXPECT_EQ(m.name.rfind("egressd_", 0), 0u) << m.name;
    const bool total = m.name.size() > 6 && m.name.substr(m.name.size() - 6) == "_total";
    EXPECT_EQ(total, m.kind == MetricKind::kCounter) << m.name << ": counters and only counters end in _total";
    EXPECT_FALSE(m.help.empty()) << m.name;
  }
}

TEST(Metrics, ExpositionCarriesFlowSeriesAndHealth) {
  EgressCounters counters;
  counters.add_sent({"none", "/usr/bin/curl", "192.0.2.1", "443", "tcp"}, 1000, 2, 1200, 3);
  counters.add_connection({"none", "/usr/bin/curl", "192.0.2.1", "443", "tcp"}, 1);
  AgentCollector collector(counters, [] {
    AgentHealth h;
    h.events_lost["ringbuf_full"] = 4;
    return h;
  }, "1.2.3");
  const std::string text = prometheus::TextSerializer().Serialize(collector.Collect());
  EXPECT_NE(text.find("egressd_sent_bytes_total{tool=\"none\",binary=\"/usr/bin/curl\",destination=\"192.0.2.1\",port=\"443\",transport=\"tcp\"} 1000"), std::string::npos) << text;
  EXPECT_NE(text.find("egressd_connections_total{tool=\"none\",binary=\"/usr/bin/curl\",destination=\"192.0.2.1\",port=\"443\",transport=\"tcp\",result=\"refused\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("egressd_events_lost_total{reason=\"ringbuf_full\"} 4"), std::string::npos);
  EXPECT_NE(text.find("egressd_build_info{version=\"1.2.3\"} 1"), std::string::npos);
  for (const auto& m : kMetricCatalog)
    EXPECT_NE(text.find("# TYPE " + std::string(m.name)), std::string::npos) << m.name;
}

TEST(Metrics, HostPortParsing) {
  EXPECT_EQ(parse_host_port("127.0.0.1:8789"), (std::pair<std::string, uint16_t>{"127.0.0.1", 8789}));
  EXPECT_EQ(parse_host_port("[::1]:0"), (std::pair<std::string, uint16_t>{"::1", 0}));
  EXPECT_THROW(parse_host_port("localhost"), std::invalid_argument);
  EXPECT_THROW(parse_host_port("127.0.0.1:99999"), std::invalid_argument);
  EXPECT_THROW(parse_host_port("127.0.0.1:http"), std::invalid_argument);
  EXPECT_THROW(parse_host_port(":80"), std::invalid_argument);
}

TEST(Features, FindsTheCgroup2Mount) {
  auto root_is = [](const std::string& root_path) {
    return [root_path](const std::string& p) -> uint64_t { return p == root_path ? 1 : 861; };
  };
  const std::string hybrid =
      "25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
      "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(find_cgroup2_mount(hybrid, root_is("/sys/fs/cgroup/unified")).path, "/sys/fs/cgroup/unified");
  const std::string unified = "30 1 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
  EXPECT_EQ(find_cgroup2_mount(unified, root_is("/sys/fs/cgroup")).path, "/sys/fs/cgroup");
  const Cgroup2Mount none = find_cgroup2_mount("25 30 0:22 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", root_is(""));
  EXPECT_EQ(none.path, "");
  EXPECT_EQ(none.problem, "no cgroup2 file system mounted (mount -t cgroup2 none /sys/fs/cgroup)");
}

// In a container's own cgroup namespace: the host's hierarchy shows as "/.."
// and is the one to use; a mount made inside the namespace is a sub-tree and
// is refused with the fix, never used silently.
TEST(Features, CgroupNamespaceSubtreeIsRefusedAndTheHostRootPreferred) {
  const std::string both =
      "61 51 0:38 /.. /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
      "68 47 0:38 / /tmp/cg2 rw,relatime - cgroup2 none rw\n";
  auto ino = [](const std::string& p) -> uint64_t { return p == "/sys/fs/cgroup/unified" ? 1 : 861; };
  EXPECT_EQ(find_cgroup2_mount(both, ino).path, "/sys/fs/cgroup/unified");
  const Cgroup2Mount sub = find_cgroup2_mount("68 47 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 none rw\n", ino);
  EXPECT_EQ(sub.path, "");
  EXPECT_NE(sub.problem.find("the cgroup2 mount at /sys/fs/cgroup is not the host's root cgroup"), std::string::npos)
      << sub.problem;
  EXPECT_NE(sub.problem.find("--cgroupns=host"), std::string::npos);
}

}  // namespace
}  // namespace egressd

namespace egressd {
namespace {

TEST(Features, NoCgroup2IsTheReasonGiven) {
  test::TempDir root("egressd-fakeproc");
  std::filesystem::create_directories(root / "self");
  std::ofstream(root / "self/mountinfo") << "25 30 0:22 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
  FeatureReport r = probe_features(root.path());
  EXPECT_TRUE(r.cgroup2_path.empty());
  bool named = false;
  for (const auto& c : r.checks)
    if (c.name == "cgroup v2") named = !c.ok && c.detail.find("no cgroup2 file system mounted") != std::string::npos;
  EXPECT_TRUE(named);
}

}  // namespace
}  // namespace egressd
