// egressd trace's logic without a kernel: process selectors, destination
// filters, the summary, the live view's lines and the HTML report.
#include "trace.h"

#include <gtest/gtest.h>

#include "tool_catalog.h"

namespace egressd {
namespace {

Process proc(uint32_t pid, std::string exe, std::string comm, std::string tool = "") {
  Process p;
  p.key = {pid, 1000};
  p.exe = std::move(exe);
  p.filename = p.exe;
  p.comm = std::move(comm);
  p.tool = std::move(tool);
  return p;
}

std::vector<ToolSpec> tools() {
  ToolSpec t;
  t.name = "claude-code";
  return {t};
}

TEST(TraceSelector, NoSelectorFollowsEverything) {
  TraceOptions o;
  ProcessSelector s(o, tools());
  EXPECT_TRUE(s.follows_all());
  EXPECT_FALSE(s.decides_at_exec());
  EXPECT_EQ(s.describe(Redactor{}), "every process");
}

TEST(TraceSelector, CommandAloneFollowsOnlyByDescent) {
  TraceOptions o;
  o.command = {"curl", "x"};
  ProcessSelector s(o, tools());
  EXPECT_FALSE(s.follows_all());
  EXPECT_FALSE(s.decides_at_exec());
  EXPECT_FALSE(s.matches(proc(1, "/usr/bin/curl", "curl"), ""));
  EXPECT_EQ(s.describe(Redactor{}), "command 'curl x'");
}

TEST(TraceSelector, TheCommandIsDescribedWithItsSecretsRedacted) {
  TraceOptions o;
  o.command = {"env", "ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnop", "claude", "--api-key", "hunter2hunter2",
               "https://user:pa55word@example.com/x"};
  ProcessSelector s(o, tools());
  const std::string d = s.describe(Redactor{});
  EXPECT_EQ(d.find("sk-ant"), std::string::npos) << d;
  EXPECT_EQ(d.find("hunter2"), std::string::npos) << d;
  EXPECT_EQ(d.find("pa55word"), std::string::npos) << d;
  EXPECT_EQ(d,
            "command 'env ANTHROPIC_API_KEY=[REDACTED] claude --api-key [REDACTED] "
            "https://user:[REDACTED]@example.com/x'");
}

TEST(TraceSelector, ExecutablePathGlobAndBareName) {
  TraceOptions o;
  o.exes = {"/usr/local/bin/foo"};
  ProcessSelector exact(o, tools());
  EXPECT_TRUE(exact.decides_at_exec());
  EXPECT_TRUE(exact.matches(proc(1, "/usr/local/bin/foo", "foo"), ""));
  EXPECT_FALSE(exact.matches(proc(1, "/usr/local/bin/foobar", "foobar"), ""));
  o.exes = {"*/node_modules/*/cli.js"};
  ProcessSelector glob(o, tools());
  Process node = proc(2, "/usr/bin/node", "node");
  node.filename = "/home/u/.npm/node_modules/x/cli.js";  // the script exec'd through its interpreter
  EXPECT_TRUE(glob.matches(node, ""));
  EXPECT_FALSE(glob.matches(proc(3, "/usr/bin/node", "node"), ""));
  o.exes = {"curl"};
  ProcessSelector bare(o, tools());
  EXPECT_TRUE(bare.matches(proc(4, "/usr/bin/curl", "curl"), ""));
  EXPECT_FALSE(bare.matches(proc(5, "/usr/bin/curl-config", "curl-config"), ""));
}

TEST(TraceSelector, CommToolPidAndCgroup) {
  TraceOptions o;
  o.comms = {"py*"};
  o.tools = {"claude-code"};
  o.pids = {42};
  o.cgroups = {"docker-abc123", "/kubepods/*/pod1*"};
  ProcessSelector s(o, tools());
  EXPECT_TRUE(s.matches(proc(1, "/usr/bin/python3", "python3"), ""));
  EXPECT_FALSE(s.matches(proc(1, "/usr/bin/ruby", "ruby"), ""));
  EXPECT_TRUE(s.matches(proc(1, "/usr/bin/node", "node", "claude-code"), ""));
  EXPECT_FALSE(s.matches(proc(1, "/usr/bin/node", "node", "other-tool"), ""));
  EXPECT_TRUE(s.matches(proc(42, "/bin/sh", "sh"), ""));
  EXPECT_TRUE(s.matches(proc(7, "/bin/sh", "sh"), "/system.slice/docker-abc123def.scope"));
  EXPECT_TRUE(s.matches(proc(7, "/bin/sh", "sh"), "/kubepods/burstable/pod1234"));
  EXPECT_FALSE(s.matches(proc(7, "/bin/sh", "sh"), "/user.slice/user-1000.slice"));
  EXPECT_FALSE(s.matches(proc(7, "/bin/sh", "sh"), ""));
}

TEST(TraceSelector, UnknownToolIsAUsageError) {
  TraceOptions o;
  o.tools = {"nope"};
  try {
    ProcessSelector s(o, tools());
    FAIL() << "accepted an unknown tool";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "--tool nope: no such tool (known: claude-code)");
  }
}

nlohmann::json connect_event(const std::string& ip, int port, const std::string& domain = "") {
  nlohmann::json j;
  j["event"]["action"] = "connection-attempted";
  j["destination"]["ip"] = ip;
  j["destination"]["port"] = port;
  if (!domain.empty()) j["destination"]["domain"] = domain;
  return j;
}

TEST(TraceDestinationFilter, CidrDomainAndPort) {
  DestinationFilter cidr({"10.0.0.0/8", "2001:db8::/32"}, {});
  EXPECT_TRUE(cidr.matches(connect_event("10.1.2.3", 443)));
  EXPECT_TRUE(cidr.matches(connect_event("2001:db8::1", 443)));
  EXPECT_FALSE(cidr.matches(connect_event("11.0.0.1", 443)));

  DestinationFilter domain({"example.com"}, {});
  EXPECT_TRUE(domain.matches(connect_event("1.2.3.4", 443, "example.com")));
  EXPECT_TRUE(domain.matches(connect_event("1.2.3.4", 443, "API.Example.com")));
  EXPECT_FALSE(domain.matches(connect_event("1.2.3.4", 443, "notexample.com")));
  EXPECT_FALSE(domain.matches(connect_event("1.2.3.4", 443)));
  nlohmann::json dns;
  dns["event"]["action"] = "dns-query";
  dns["dns"]["question"]["name"] = "telemetry.example.com";
  dns["destination"]["ip"] = "127.0.0.53";
  dns["destination"]["port"] = 53;
  EXPECT_TRUE(domain.matches(dns)) << "a DNS query is matched on the name it asks for";

  DestinationFilter port({}, {443});
  EXPECT_TRUE(port.matches(connect_event("1.2.3.4", 443)));
  EXPECT_FALSE(port.matches(connect_event("1.2.3.4", 80)));
  EXPECT_FALSE(port.matches(dns));

  DestinationFilter both({"1.2.3.4"}, {443});
  EXPECT_TRUE(both.matches(connect_event("1.2.3.4", 443)));
  EXPECT_FALSE(both.matches(connect_event("1.2.3.4", 80)));
  EXPECT_FALSE(both.matches(connect_event("1.2.3.5", 443)));
}

TEST(TraceDestinationFilter, RejectsGarbage) {
  EXPECT_THROW(DestinationFilter({"exa mple.com"}, {}), std::invalid_argument);
  EXPECT_THROW(DestinationFilter({"10.0.0.0/99"}, {}), std::invalid_argument);
  EXPECT_THROW(DestinationFilter({""}, {}), std::invalid_argument);
}

TEST(TraceTime, ParsesTheLogsTimestamps) {
  EXPECT_EQ(parse_iso8601_ns("1970-01-01T00:00:01.5Z"), 1'500'000'000ULL);
  EXPECT_EQ(parse_iso8601_ns("2026-11-24T09:00:00.123456Z"), 1795510800123456000ULL);
  EXPECT_EQ(parse_iso8601_ns("2026-11-24T09:00:00Z"), 1795510800000000000ULL);
  EXPECT_EQ(parse_iso8601_ns("2026-11-24 09:00:00"), 0u);
  EXPECT_EQ(parse_iso8601_ns("garbage"), 0u);
}

nlohmann::json flow_event(const std::string& action, const std::string& id, uint64_t bytes, const std::string& ts,
                          const std::string& exe = "/usr/bin/curl") {
  nlohmann::json j;
  j["@timestamp"] = ts;
  j["event"]["action"] = action;
  j["event"]["start"] = "2026-11-24T09:00:00.000000Z";
  j["event"]["duration"] = 1000;
  j["destination"]["ip"] = "93.184.216.34";
  j["destination"]["port"] = 443;
  j["destination"]["domain"] = "example.com";
  j["network"]["transport"] = "tcp";
  j["process"]["pid"] = 10;
  j["process"]["name"] = "curl";
  j["process"]["executable"] = exe;
  j["egressd"]["flow"]["id"] = id;
  j["egressd"]["tool"] = nullptr;
  if (action == "connection-attempted")
    j["egressd"]["connection"]["result"] = bytes ? "ok" : "refused";
  else
    j["source"]["bytes"] = bytes;
  return j;
}

TEST(TraceSummary, SumsFlowsPerDestination) {
  TraceSummary s;
  s.add(flow_event("connection-attempted", "f1", 1, "2026-11-24T09:00:00.100000Z"));
  s.add(flow_event("flow-updated", "f1", 500, "2026-11-24T09:00:01.000000Z"));
  s.add(flow_event("flow-ended", "f1", 800, "2026-11-24T09:00:02.000000Z"));  // totals, not deltas
  s.add(flow_event("connection-attempted", "f2", 1, "2026-11-24T09:00:03.000000Z", "/usr/bin/wget"));
  s.add(flow_event("flow-ended", "f2", 200, "2026-11-24T09:00:04.000000Z", "/usr/bin/wget"));
  s.add(flow_event("connection-attempted", "f3", 0, "2026-11-24T09:00:05.000000Z"));  // refused
  nlohmann::json q;
  q["@timestamp"] = "2026-11-24T09:00:00.050000Z";
  q["event"]["action"] = "dns-query";
  q["dns"]["question"] = {{"name", "example.com"}, {"type", "A"}};
  q["destination"] = {{"ip", "127.0.0.53"}, {"port", 53}};
  q["process"]["executable"] = "/usr/bin/curl";
  s.add(q);
  s.add(q);

  auto d = s.destinations();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].bytes, 1000u);
  EXPECT_EQ(d[0].connections, 3u);
  EXPECT_EQ(d[0].failed, 1u);
  EXPECT_EQ(d[0].flows, 3u);
  EXPECT_EQ(d[0].binaries, (std::set<std::string>{"/usr/bin/curl", "/usr/bin/wget"}));
  EXPECT_EQ(d[0].first_ns, parse_iso8601_ns("2026-11-24T09:00:00.000000Z"));
  EXPECT_EQ(d[0].last_ns, parse_iso8601_ns("2026-11-24T09:00:05.000000Z"));
  auto qs = s.queries();
  ASSERT_EQ(qs.size(), 1u);
  EXPECT_EQ(qs[0].count, 2u);
  EXPECT_EQ(qs[0].resolvers, (std::set<std::string>{"127.0.0.53:53"}));

  auto j = s.to_json();
  EXPECT_EQ(j["destinations"][0]["bytes"], 1000);
  EXPECT_EQ(j["destinations"][0]["name"], "example.com");
  EXPECT_EQ(j["dns_queries"][0]["count"], 2);
  const std::string text = s.text(false);
  EXPECT_NE(text.find("1 destinations, 3 connections, 1000 bytes sent"), std::string::npos) << text;
  EXPECT_NE(text.find("example.com (93.184.216.34)"), std::string::npos) << text;
  EXPECT_EQ(text.find('\033'), std::string::npos);
  EXPECT_NE(s.text(true).find("\033[1m"), std::string::npos);
}

TEST(TraceSummary, HtmlIsSelfContainedAndEscapesNames) {
  TraceSummary s;
  auto e = flow_event("flow-ended", "f1", 4242, "2026-11-24T09:00:02.000000Z");
  e["destination"]["domain"] = "<script>alert(1)</script>.evil";
  s.add(e);
  const std::string html = s.html("tool <x>");
  EXPECT_EQ(html.find("<script>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;"), std::string::npos);
  EXPECT_NE(html.find("egressd trace: tool &lt;x&gt;"), std::string::npos);
  EXPECT_NE(html.find("<rect"), std::string::npos) << "a bar for the flow";
  EXPECT_NE(html.find("fill=\"#1f6fb4\""), std::string::npos) << "TCP bars in their colour";
  EXPECT_NE(html.find(">4242<"), std::string::npos);
}

TEST(TraceView, AlignedLinesColouredOnlyOnRequest) {
  auto c = flow_event("connection-attempted", "f1", 1, "2026-11-24T09:00:00.100000Z");
  auto e = flow_event("flow-ended", "f1", 800, "2026-11-24T09:00:02.000000Z");
  const std::string plain_c = trace_line(c, false), plain_e = trace_line(e, false);
  EXPECT_EQ(plain_c.find('\033'), std::string::npos);
  EXPECT_NE(plain_c.find("connect"), std::string::npos);
  EXPECT_NE(plain_c.find("example.com (93.184.216.34)"), std::string::npos) << plain_c;
  EXPECT_NE(plain_e.find("800"), std::string::npos) << plain_e;
  EXPECT_EQ(plain_c.find("example.com"), plain_e.find("example.com")) << "columns line up";
  EXPECT_EQ(trace_header(false).find("DESTINATION"), plain_c.find("example.com"));
  EXPECT_NE(trace_line(c, true).find("\033[32mconnect"), std::string::npos);
  auto refused = flow_event("connection-attempted", "f2", 0, "2026-11-24T09:00:00.100000Z");
  EXPECT_NE(trace_line(refused, true).find("\033[31mconnect"), std::string::npos);
}

}  // namespace
}  // namespace egressd
