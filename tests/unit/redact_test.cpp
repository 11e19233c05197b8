#include <gtest/gtest.h>

#include "redact.h"

namespace egressd {
namespace {

TEST(Redact, SecretFlagsWithValues) {
  Redactor r;
  auto out = r.redact_argv({"claude", "--api-key=sk-ant-api03-AAAABBBBCCCCDDDD", "--model", "opus"});
  EXPECT_EQ(out[1], "--api-key=[REDACTED]");
  EXPECT_EQ(out[3], "opus");
}

TEST(Redact, SecretFlagFollowedBySeparateValue) {
  Redactor r;
  auto out = r.redact_argv({"gh", "auth", "login", "--with-token", "ghp_abc", "--hostname", "github.com"});
  EXPECT_EQ(out[4], "[REDACTED]");
  EXPECT_EQ(out[6], "github.com");
  out = r.redact_argv({"mysql", "-u", "root", "--password", "hunter2"});
  EXPECT_EQ(out[4], "[REDACTED]");
}

TEST(Redact, EnvironmentStyleAssignments) {
  Redactor r;
  EXPECT_EQ(r.redact("ANTHROPIC_API_KEY=sk-ant-xyz node cli.js"), "ANTHROPIC_API_KEY=[REDACTED] node cli.js");
  EXPECT_EQ(r.redact("OPENAI_API_KEY=abc"), "OPENAI_API_KEY=[REDACTED]");
  EXPECT_EQ(r.redact("DB_PASSWORD=s3cret"), "DB_PASSWORD=[REDACTED]");
}

TEST(Redact, AuthorizationHeaders) {
  Redactor r;
  auto out = r.redact_argv({"curl", "-H", "Authorization: Bearer eyJhbGciOi.payload.sig", "https://api.example.com"});
  EXPECT_EQ(out[2], "Authorization: Bearer [REDACTED]");
  EXPECT_EQ(out[3], "https://api.example.com");
  EXPECT_EQ(r.redact("x-api-key: abc123"), "x-api-key: [REDACTED]");
}

TEST(Redact, CredentialsInUrls) {
  Redactor r;
  EXPECT_EQ(r.redact("git clone https://alice:tok3n@git.example.com/repo.git"),
            "git clone https://alice:[REDACTED]@git.example.com/repo.git");
  EXPECT_EQ(r.redact("postgres://app:pw@db:5432/x"), "postgres://app:[REDACTED]@db:5432/x");
  EXPECT_EQ(r.redact("https://example.com/a?token=abc&page=2"), "https://example.com/a?token=[REDACTED]&page=2");
}

TEST(Redact, KnownTokenShapesAnywhere) {
  Redactor r;
  EXPECT_EQ(r.redact("echo ghp_0123456789abcdefghij0123"), "echo [REDACTED]");
  EXPECT_EQ(r.redact("AKIAIOSFODNN7EXAMPLE"), "[REDACTED]");
  EXPECT_EQ(r.redact("sk-proj-abcdefghijklmnop1234"), "[REDACTED]");
}

TEST(Redact, LeavesOrdinaryCommandLinesAlone) {
  Redactor r;
  std::vector<std::string> argv = {"node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js", "-p", "hello"};
  EXPECT_EQ(r.redact_argv(argv), argv);
  EXPECT_EQ(r.redact("git push origin main"), "git push origin main");
}

TEST(Redact, ConfiguredPatterns) {
  Redactor r;
  r.add_pattern("corp-[0-9]{6}");
  EXPECT_EQ(r.redact("deploy --ticket corp-123456"), "deploy --ticket [REDACTED]");
}

TEST(CommandLine, QuotesWhatNeedsIt) {
  EXPECT_EQ(join_command_line({"sh", "-c", "echo hi"}), "sh -c 'echo hi'");
  EXPECT_EQ(join_command_line({"a", "it's"}), "a 'it'\\''s'");
  EXPECT_EQ(join_command_line({"a", ""}), "a ''");
}

}  // namespace
}  // namespace egressd
