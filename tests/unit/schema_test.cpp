// The schema check the kernel tests run on every log must be able to fail.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>

#include "harness.h"

namespace egressd::test {
namespace {

int validate(const std::string& line) {
  const std::string path = "/tmp/egressd-schema-test.json";
  std::ofstream(path) << line << "\n";
  const std::string cmd = std::string("/usr/bin/python3 ") + EGRESSD_SOURCE_DIR + "/tests/support/validate_events.py " +
                          EGRESSD_SOURCE_DIR + "/docs/egressd-events.schema.json " + path + " >/dev/null 2>&1";
  int status = std::system(cmd.c_str());
  std::remove(path.c_str());
  return WEXITSTATUS(status);
}

const char* kGood =
    R"({"@timestamp":"2026-11-24T09:17:45.605564Z","agent":{"type":"egressd","version":"0.1.0"},)"
    R"("destination":{"address":"127.0.0.1","ip":"127.0.0.1","port":45095},"ecs":{"version":"8.11.0"},)"
    R"("egressd":{"flow":{"id":"1-3827","sends":1,"socket_cookie":1,"wire_bytes":1398,"wire_packets":3},"tool":null},)"
    R"("event":{"action":"flow-ended","category":["network"],"duration":179683,"kind":"event","module":"egressd",)"
    R"("reason":"closed","start":"2026-11-24T09:17:45.605384Z","type":["connection","end"]},)"
    R"("host":{"name":"vm"},"network":{"direction":"egress","transport":"tcp","type":"ipv4"},)"
    R"("process":{"pid":3827,"entity_id":"h-3827-1","start":"2026-11-24T09:17:45.222659Z","executable":"/usr/bin/python3.11"},)"
    R"("source":{"bytes":1234},"user":{"id":"0"}})";

TEST(Schema, AcceptsAFlowEvent) { EXPECT_EQ(validate(kGood), 0); }

TEST(Schema, RejectsMissingAndMistypedFields) {
  std::string no_bytes = kGood;
  no_bytes.replace(no_bytes.find(R"("source":{"bytes":1234},)"), 24, "");
  EXPECT_EQ(validate(no_bytes), 1);
  std::string typo = kGood;
  typo.replace(typo.find("\"tool\""), 6, "\"tol\"");
  EXPECT_EQ(validate(typo), 1);
  std::string bad_action = kGood;
  bad_action.replace(bad_action.find("flow-ended"), 10, "flow-exploded");
  EXPECT_EQ(validate(bad_action), 1);
  EXPECT_EQ(validate("not json"), 1);
}

}  // namespace
}  // namespace egressd::test
