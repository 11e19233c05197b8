// Which programs count bytes, per kernel: the choice made at start-up from
// what the kernel's BTF has (never from its version number).
#include <gtest/gtest.h>

#include "bpf_loader.h"

namespace egressd {
namespace {

using Programs = std::vector<std::string>;

TEST(BytesHooks, TracepointWhereTheKernelHasIt) {  // 6.5 and later
  KernelBytesFeatures k{.sock_send_length = true, .sendpage_op = false, .packet_sendmsg = true};
  auto h = choose_bytes_hooks(k, "auto");
  EXPECT_EQ(h.programs, Programs{"sock_send_length"});
  EXPECT_TRUE(h.notes.empty());
}

TEST(BytesHooks, TracepointPlusSendpageBefore6_5) {  // 6.3, 6.4: sendfile and splice skip the tracepoint
  KernelBytesFeatures k{.sock_send_length = true, .sendpage_op = true, .packet_sendmsg = true};
  EXPECT_EQ(choose_bytes_hooks(k, "auto").programs, (Programs{"sock_send_length", "inet_sendpage_exit"}));
}

TEST(BytesHooks, FexitBefore6_3) {  // 5.10, 6.1
  KernelBytesFeatures k{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = true};
  EXPECT_EQ(choose_bytes_hooks(k, "auto").programs,
            (Programs{"inet_sendmsg_exit", "inet6_sendmsg_exit", "packet_sendmsg_exit", "inet_sendpage_exit"}));
}

TEST(BytesHooks, FexitWithoutAfPacketSaysWhatIsNotCounted) {
  KernelBytesFeatures k{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = false};
  auto h = choose_bytes_hooks(k, "auto");
  EXPECT_EQ(h.programs, (Programs{"inet_sendmsg_exit", "inet6_sendmsg_exit", "inet_sendpage_exit"}));
  ASSERT_EQ(h.notes.size(), 1u);
  EXPECT_EQ(h.notes[0], "AF_PACKET bytes are not counted: packet_sendmsg is not in the kernel's BTF");
}

TEST(BytesHooks, ForcedChoices) {
  KernelBytesFeatures modern{.sock_send_length = true, .sendpage_op = false, .packet_sendmsg = true};
  EXPECT_EQ(choose_bytes_hooks(modern, "fexit").programs,
            (Programs{"inet_sendmsg_exit", "inet6_sendmsg_exit", "packet_sendmsg_exit"}));
  KernelBytesFeatures old{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = true};
  try {
    choose_bytes_hooks(old, "sock_send_length");
    FAIL() << "chose a tracepoint the kernel lacks";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(),
                 "kernel.bytes_hook sock_send_length: this kernel has no tp_btf/sock_send_length (Linux before 6.3)");
  }
  EXPECT_THROW(choose_bytes_hooks(modern, "kprobe"), std::runtime_error);
}

TEST(BytesHooks, ThisKernel) {
  // The probe reads the running kernel's BTF; on the development machine
  // (6.18) the tracepoint is there and ->sendpage is gone.
  // Elsewhere (an older kernel), the fallback is chosen instead.
  KernelBytesFeatures k = probe_bytes_features();
  const auto programs = choose_bytes_hooks(k, "auto").programs;
  if (k.sock_send_length) {
    EXPECT_FALSE(k.sendpage_op);
    EXPECT_EQ(programs, Programs{"sock_send_length"});
  } else {
    EXPECT_EQ(programs.front(), "inet_sendmsg_exit");
  }
}

}  // namespace
}  // namespace egressd
