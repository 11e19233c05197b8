#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "addr_helpers.h"
#include <sys/socket.h>

#include "process_table.h"
#include "text.h"
#include "tool_catalog.h"
#include "tool_matcher.h"

namespace egressd {
namespace {

using test_addr::v4;
using test_addr::v6;

std::vector<ToolSpec> parse(const std::string& yaml) {
  YamlReader r("tools.yaml");
  return parse_tools(r.load(yaml)["tools"], r);
}

std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const char* kTools = R"(
tools:
  - name: native-tool
    match:
      executables: ["*/.local/share/native-tool/versions/*"]
    expected:
      domains: ["api.native.example", "*.telemetry.example"]
      cidrs: ["192.0.2.0/24", "2001:db8::/32"]
      ports: [443]
  - name: node-tool
    match:
      args: ["*/node_modules/@scope/node-tool/*"]
    follow_children: false
  - name: py-tool
    match:
      args: ["*/bin/py-tool"]
      comm: ["py-tool"]
)";

TEST(ToolCatalog, BuiltinCatalogParses) {
  EXPECT_FALSE(builtin_tools().empty());
  for (const auto& t : builtin_tools()) EXPECT_FALSE(t.name.empty());
}

TEST(ToolCatalog, ParsesEveryField) {
  auto tools = parse(kTools);
  ASSERT_EQ(tools.size(), 3u);
  EXPECT_EQ(tools[0].expected_domains.size(), 2u);
  EXPECT_EQ(tools[0].expected_cidrs.size(), 2u);
  EXPECT_EQ(tools[0].expected_ports, (std::vector<uint16_t>{443}));
  EXPECT_TRUE(tools[0].follow_children);
  EXPECT_FALSE(tools[1].follow_children);
}

TEST(ToolCatalog, ErrorsNameFileAndLine) {
  EXPECT_EQ(error_of("tools:\n  - name: a\n    match: {executables: ['/x']}\n    colour: red\n"),
            "tools.yaml:4: unknown key 'colour' in a tool (known: description, expected, follow_children, match, name)");
  EXPECT_EQ(error_of("tools:\n  - name: a\n    match:\n      executables: ['/opt/[abc/x']\n"),
            "tools.yaml:4: bad glob '/opt/[abc/x' in match.executables: unclosed '[' or empty");
  EXPECT_EQ(error_of("tools:\n  - name: a\n    match: {comm: [a]}\n  - name: a\n    match: {comm: [b]}\n"),
            "tools.yaml:4: duplicate tool name 'a'");
  EXPECT_EQ(error_of("tools:\n  - name: Bad Name\n    match: {comm: [a]}\n"),
            "tools.yaml:2: tool name 'Bad Name' must be lowercase letters, digits and dashes");
  EXPECT_EQ(error_of("tools:\n  - name: a\n    match: {}\n"), "tools.yaml:3: tool 'a' has no matcher");
  EXPECT_EQ(error_of("tools:\n  - name: a\n"), "tools.yaml:2: tool 'a' needs a 'match'");
  EXPECT_EQ(error_of("tools:\n  - name: a\n    match: {comm: [a]}\n    expected: {cidrs: ['10.0.0.0/33']}\n"),
            "tools.yaml:4: '10.0.0.0/33' is not an address or CIDR");
  EXPECT_EQ(error_of("tools:\n  - name: a\n    match: {comm: [a]}\n    expected:\n      ports: [70000]\n"),
            "tools.yaml:5: 'expected.ports[]' must be between 1 and 65535");
  EXPECT_EQ(error_of("tools:\n  - name: a\n    match: {sha256: [abc]}\n"),
            "tools.yaml:3: 'abc' is not a sha256 hex digest");
  EXPECT_EQ(error_of("tools:\n  - name: a\n    match: {comm: [a]}\n    expected: {domains: ['bad domain']}\n"),
            "tools.yaml:4: 'bad domain' is not a domain or *.domain");
  EXPECT_EQ(error_of("tools:\n  - name: a\n    match: {comm: [a]}\n    follow_children: maybe\n"),
            "tools.yaml:4: 'follow_children' must be true or false");
}

TEST(ToolCatalog, UserEntriesReplaceBuiltinsOfTheSameName) {
  auto builtin = parse(kTools);
  auto user = parse("tools:\n  - name: py-tool\n    match: {comm: [other]}\n  - name: mine\n    match: {comm: [mine]}\n");
  auto merged = merge_tools(builtin, user);
  ASSERT_EQ(merged.size(), 4u);
  EXPECT_EQ(merged[0].name, "py-tool");
  EXPECT_EQ(merged[0].comm, (std::vector<std::string>{"other"}));
  EXPECT_EQ(merged[1].name, "mine");
  EXPECT_EQ(merged[2].name, "native-tool");
  EXPECT_EQ(merged[3].name, "node-tool");
}

TEST(Globs, StarCrossesSlashesAndClassesWork) {
  EXPECT_TRUE(glob_match("*/node_modules/@a/b/*", "/usr/lib/node_modules/@a/b/dist/cli.js"));
  EXPECT_FALSE(glob_match("*/node_modules/@a/b/*", "/usr/lib/node_modules/@a/bb/cli.js"));
  EXPECT_TRUE(glob_match("*/versions/[0-9]*", "/home/u/.local/share/x/versions/1.2.3"));
  EXPECT_FALSE(glob_match("*/versions/[0-9]*", "/home/u/.local/share/x/versions/latest"));
  EXPECT_TRUE(glob_valid("a[]]b"));
  EXPECT_FALSE(glob_valid("a[b"));
  EXPECT_FALSE(glob_valid(""));
}

TEST(ToolMatcher, EachMatcherKind) {
  ToolMatcher m(parse(kTools));
  EXPECT_EQ(m.match("/home/u/.local/share/native-tool/versions/2.0.1", {"native-tool"}, "native-tool", ""), 1u);
  EXPECT_EQ(m.match("/usr/bin/node", {"node", "/usr/lib/node_modules/@scope/node-tool/cli.js", "-p"}, "node", ""), 2u);
  EXPECT_EQ(m.match("/usr/bin/python3.11", {"/usr/bin/python3", "/home/u/.local/bin/py-tool"}, "python3", ""), 3u);
  EXPECT_EQ(m.match("/usr/bin/python3.11", {"python3"}, "py-tool", ""), 3u);
  EXPECT_EQ(m.match("/usr/bin/node", {"node", "/srv/app/server.js"}, "node", ""), 0u);
  EXPECT_EQ(m.tool(2)->name, "node-tool");
  EXPECT_FALSE(m.follows_children(2));
  EXPECT_TRUE(m.follows_children(1));
  EXPECT_EQ(m.tool(0), nullptr);
  EXPECT_EQ(m.tool(99), nullptr);
}

TEST(ToolMatcher, Sha256OfTheExecutable) {
  const std::string path = "/tmp/egressd-sha-test";
  { FILE* f = fopen(path.c_str(), "w"); fputs("abc", f); fclose(f); }
  ToolMatcher m(parse("tools:\n  - name: hashed\n    match:\n      sha256: [BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD]\n"));
  EXPECT_EQ(m.match("/opt/renamed", {"x"}, "x", path), 1u);
  const std::string other = path + "-other";
  { FILE* f = fopen(other.c_str(), "w"); fputs("abd", f); fclose(f); }
  EXPECT_EQ(m.match("/opt/renamed", {"x"}, "x", other), 0u);
  std::remove(path.c_str());
  std::remove(other.c_str());
}

TEST(ToolMatcher, ExpectedDestinations) {
  ToolMatcher m(parse(kTools));
  EXPECT_EQ(m.expected(1, v4("192.0.2.9", 443), ""), true);         // CIDR
  EXPECT_EQ(m.expected(1, v4("198.51.100.1", 443), "api.native.example"), true);
  EXPECT_EQ(m.expected(1, v4("198.51.100.1", 443), "x.telemetry.example"), true);
  EXPECT_EQ(m.expected(1, v4("198.51.100.1", 443), "telemetry.example"), false);
  EXPECT_EQ(m.expected(1, v4("198.51.100.1", 443), ""), false);
  EXPECT_EQ(m.expected(1, v4("192.0.2.9", 80), ""), false);           // port not listed
  EXPECT_EQ(m.expected(2, v4("192.0.2.9", 443), ""), std::nullopt);  // no expectations
  EXPECT_EQ(m.expected(0, v4("192.0.2.9", 443), ""), std::nullopt);
}

TEST(Cidr, MappedAddressesAndPrefixes) {
  auto c = Cidr::parse("10.1.0.0/16");
  ASSERT_TRUE(c);
  flow_addr mapped{};
  mapped.family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:10.1.200.3", mapped.addr_be);
  EXPECT_TRUE(c->contains(mapped));
  EXPECT_FALSE(c->contains(v4("10.2.0.1", 1)));
  EXPECT_TRUE(Cidr::parse("10.1.2.3")->contains(v4("10.1.2.3", 1)));
  EXPECT_TRUE(Cidr::parse("10.0.0.0/9")->contains(v4("10.127.0.1", 1)));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/9")->contains(v4("10.128.0.1", 1)));
  EXPECT_FALSE(Cidr::parse("nonsense/8"));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/"));
}

class ToolTree : public ::testing::Test {
 protected:
  ToolTree() : matcher_(parse(kTools)), table_("/nonexistent", "h", &matcher_) {
    table_.set_tool_listener([this](const Process& p) { tagged_.push_back(p.key.tgid); });
  }
  std::shared_ptr<const Process> exec(uint32_t pid, uint64_t start, uint32_t ppid, const std::string& exe,
                                      std::vector<std::string> argv) {
    ExecRecord r{};
    r.fixed.proc = {pid, 0, start};
    r.fixed.parent = {ppid, 0, 1};
    r.exe = exe;
    r.argv = std::move(argv);
    return table_.on_exec(r);
  }
  std::shared_ptr<const Process> fork(uint32_t parent, uint64_t pstart, uint32_t child, uint64_t cstart) {
    fork_event f{};
    f.parent = {parent, 0, pstart};
    f.child = {child, 0, cstart};
    return table_.on_fork(f);
  }
  ToolMatcher matcher_;
  ProcessTable table_;
  std::vector<uint32_t> tagged_;
};

TEST_F(ToolTree, ChildrenAndExecChainsInheritTheTool) {
  auto root = exec(10, 1, 1, "/usr/bin/python3.11", {"python3", "/home/u/.local/bin/py-tool"});
  EXPECT_EQ(root->tool, "py-tool");
  EXPECT_TRUE(root->tool_own);
  auto sh = fork(10, 1, 11, 2);
  EXPECT_EQ(sh->tool, "py-tool");
  EXPECT_FALSE(sh->tool_own);
  auto git = exec(11, 2, 10, "/usr/bin/git", {"git", "push"});
  EXPECT_EQ(git->tool, "py-tool");  // sh -c git: the exec keeps the tag
  auto grandchild = fork(11, 2, 12, 3);
  EXPECT_EQ(grandchild->tool, "py-tool");
  EXPECT_EQ(tagged_, (std::vector<uint32_t>{10, 11, 12}));
}

TEST_F(ToolTree, DescendantThatIsAToolTakesItsOwnTag) {
  exec(20, 1, 1, "/usr/bin/python3.11", {"python3", "/home/u/.local/bin/py-tool"});
  fork(20, 1, 21, 2);
  auto native = exec(21, 2, 20, "/home/u/.local/share/native-tool/versions/3", {"native-tool"});
  EXPECT_EQ(native->tool, "native-tool");
  EXPECT_TRUE(native->tool_own);
}

TEST_F(ToolTree, FollowChildrenFalseStopsAtTheTool) {
  auto node = exec(30, 1, 1, "/usr/bin/node", {"node", "/x/node_modules/@scope/node-tool/cli.js"});
  EXPECT_EQ(node->tool, "node-tool");
  auto child = fork(30, 1, 31, 2);
  EXPECT_EQ(child->tool, "");
  EXPECT_EQ(child->tool_id, 0u);
}

TEST_F(ToolTree, KernelTagIsUsedWhenTheParentIsUnknownHere) {
  fork_event f{};
  f.parent = {50, 0, 1};  // never seen: its events were lost
  f.child = {51, 0, 2};
  f.tool_id = 3;
  EXPECT_EQ(table_.on_fork(f)->tool, "py-tool");
  ExecRecord r{};
  r.fixed.proc = {52, 0, 3};
  r.fixed.parent = {49, 0, 1};
  r.fixed.tool_id = 1;
  r.exe = "/usr/bin/git";
  EXPECT_EQ(table_.on_exec(r)->tool, "native-tool");
}

TEST_F(ToolTree, UnrelatedProcessesAreNotTools) {
  auto p = exec(40, 1, 1, "/usr/bin/curl", {"curl", "https://example.com"});
  EXPECT_EQ(p->tool, "");
  EXPECT_TRUE(tagged_.empty());
}

}  // namespace
}  // namespace egressd
