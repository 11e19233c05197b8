// The built-in catalog against realistic install layouts of each tool
// (tests/fixtures/tools/layouts.txt, researched in docs/TOOLS.md): every
// layout is recognised as its tool by the real matcher, and look-alikes are
// recognised as nothing.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <fstream>
#include <set>
#include <sstream>

#include "tool_catalog.h"
#include "tool_matcher.h"

namespace egressd {
namespace {

struct Layout {
  int line;
  std::string tool, kind, text;
};

std::vector<Layout> layouts() {
  std::ifstream in(std::string(EGRESSD_SOURCE_DIR) + "/tests/fixtures/tools/layouts.txt");
  std::vector<Layout> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    Layout l{n, "", "", ""};
    std::getline(fields, l.tool, '\t');
    std::getline(fields, l.kind, '\t');
    std::getline(fields, l.text);
    for (size_t p; (p = l.text.find("$ROOT")) != std::string::npos;) l.text.replace(p, 5, "/fake/root");
    out.push_back(l);
  }
  return out;
}

std::vector<std::string> split_argv(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t p; (p = text.find(" | ", start)) != std::string::npos; start = p + 3) out.push_back(text.substr(start, p - start));
  out.push_back(text.substr(start));
  return out;
}

TEST(CatalogLayouts, EveryLayoutIsItsToolAndLookAlikesAreNothing) {
  ToolMatcher m(builtin_tools());
  auto all = layouts();
  ASSERT_GT(all.size(), 100u);
  std::set<std::string> covered;
  for (const Layout& l : all) {
    uint32_t id = 0;
    if (l.kind == "exe") {
      id = m.match(l.text, {l.text}, "", "");
    } else {
      ASSERT_EQ(l.kind, "argv") << "line " << l.line;
      auto argv = split_argv(l.text);
      id = m.match(argv[0].rfind('/', 0) == 0 ? argv[0] : "/usr/bin/" + argv[0], argv, "", "");
    }
    const std::string got = id ? m.tool(id)->name : "none";
    EXPECT_EQ(got, l.tool) << "layouts.txt:" << l.line << ": " << l.text;
    covered.insert(l.tool);
  }
  for (const auto& t : builtin_tools()) EXPECT_TRUE(covered.count(t.name)) << t.name << " has no layout";
  EXPECT_TRUE(covered.count("none"));
}

// What the real CLIs were seen to reach at start-up is expected of them:
// Codex runs `git ls-remote https://github.com/openai/plugins.git`.
TEST(CatalogLayouts, CodexMayReachGithubAtStartUp) {
  ToolMatcher m(builtin_tools());
  const uint32_t codex = m.match("/usr/lib/node_modules/@openai/codex/vendor/x86_64-unknown-linux-musl/codex/codex",
                                 {"codex"}, "", "");
  ASSERT_NE(codex, 0u);
  ASSERT_EQ(m.tool(codex)->name, "codex");
  flow_addr dst{};
  dst.family = AF_INET;
  dst.port = 443;
  EXPECT_EQ(m.expected(codex, dst, "github.com"), true);
  EXPECT_EQ(m.expected(codex, dst, "gist.github.com"), false);
}

TEST(CatalogLayouts, RequiredToolsAreInTheCatalog) {
  std::set<std::string> names;
  for (const auto& t : builtin_tools()) names.insert(t.name);
  for (const char* t : {"claude-code", "codex", "gemini-cli", "copilot-cli", "cursor", "cursor-agent", "qoder",
                        "aider", "opencode", "amp", "windsurf", "continue"})
    EXPECT_TRUE(names.count(t)) << t;
}

}  // namespace
}  // namespace egressd
