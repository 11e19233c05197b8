// Which programs count bytes, per kernel: the choice made at start-up from
// what the kernel's BTF has (never from its version number).
#include <gtest/gtest.h>

#include "bpf_loader.h"

namespace egressd {
namespace {

using Programs = std::vector<std::string>;

// The message a choice throws with, or "" if it does not throw.
template <typename F>
std::string error_of(F&& choose) {
  try {
    choose();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(BytesHooks, TracepointWhereTheKernelHasIt) {  // 6.5 and later
  KernelFeatures k{.sock_send_length = true, .sendpage_op = false, .packet_sendmsg = true};
  auto h = choose_bytes_hooks(k, "auto");
  EXPECT_EQ(h.programs, Programs{"sock_send_length"});
  EXPECT_TRUE(h.notes.empty());
}

TEST(BytesHooks, TracepointPlusSendpageBefore6_5) {  // 6.3, 6.4: sendfile and splice skip the tracepoint
  KernelFeatures k{.sock_send_length = true, .sendpage_op = true, .packet_sendmsg = true};
  EXPECT_EQ(choose_bytes_hooks(k, "auto").programs, (Programs{"sock_send_length", "inet_sendpage_exit"}));
}

TEST(BytesHooks, FexitBefore6_3) {  // 5.10, 6.1
  KernelFeatures k{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = true};
  EXPECT_EQ(choose_bytes_hooks(k, "auto").programs,
            (Programs{"inet_sendmsg_exit", "inet6_sendmsg_exit", "packet_sendmsg_exit", "inet_sendpage_exit"}));
}

TEST(BytesHooks, FexitWithoutAfPacketSaysWhatIsNotCounted) {
  KernelFeatures k{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = false};
  auto h = choose_bytes_hooks(k, "auto");
  EXPECT_EQ(h.programs, (Programs{"inet_sendmsg_exit", "inet6_sendmsg_exit", "inet_sendpage_exit"}));
  ASSERT_EQ(h.notes.size(), 1u);
  EXPECT_EQ(h.notes[0], "AF_PACKET bytes are not counted: packet_sendmsg is not in the kernel's BTF");
}

TEST(BytesHooks, ForcedChoices) {
  KernelFeatures modern{.sock_send_length = true, .sendpage_op = false, .packet_sendmsg = true};
  EXPECT_EQ(choose_bytes_hooks(modern, "fexit").programs,
            (Programs{"inet_sendmsg_exit", "inet6_sendmsg_exit", "packet_sendmsg_exit"}));
  KernelFeatures old{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = true};
  EXPECT_EQ(error_of([&] { choose_bytes_hooks(old, "sock_send_length"); }),
            "kernel.bytes_hook sock_send_length: this kernel has no tp_btf/sock_send_length (Linux before 6.3)");
  EXPECT_THROW(choose_bytes_hooks(modern, "uprobe"), std::runtime_error);
}

TEST(BytesHooks, KprobesWhereTheyAreConfigured) {  // a kernel without BPF trampolines
  KernelFeatures k{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = true, .kprobes = true};
  auto h = choose_bytes_hooks(k, "kprobe");
  EXPECT_EQ(h.programs, (Programs{"inet_sendmsg_kprobe", "inet6_sendmsg_kprobe", "packet_sendmsg_kprobe",
                                  "inet_sendpage_kprobe", "inet_sendmsg_kretprobe", "inet6_sendmsg_kretprobe",
                                  "packet_sendmsg_kretprobe", "inet_sendpage_kretprobe"}));
  EXPECT_TRUE(h.needs_hash);
  ASSERT_EQ(h.notes.size(), 1u);  // what a kretprobe can miss
  EXPECT_NE(h.notes[0].find("not counted"), std::string::npos);
  // kprobe programs cannot use sk_storage: the hash store comes with them.
  EXPECT_TRUE(choose_state(KernelFeatures{}, "auto", "auto", h.needs_hash).socket_hash);
  EXPECT_THROW(choose_state(KernelFeatures{}, "sk_storage", "auto", h.needs_hash), std::runtime_error);
  k.kprobes = false;
  EXPECT_EQ(error_of([&] { choose_bytes_hooks(k, "kprobe"); }),
            "kernel.bytes_hook kprobe: this kernel has no kprobes (built without CONFIG_KPROBE_EVENTS)");
}

TEST(BytesHooks, ThisKernel) {
  // The probe reads the running kernel's BTF; on the development machine
  // (6.18) the tracepoint is there and ->sendpage is gone.
  // Elsewhere (an older kernel), the fallback is chosen instead.
  KernelFeatures k = probe_kernel_features();
  const auto programs = choose_bytes_hooks(k, "auto").programs;
  if (k.sock_send_length) {
    EXPECT_FALSE(k.sendpage_op);
    EXPECT_EQ(programs, Programs{"sock_send_length"});
  } else {
    EXPECT_EQ(programs.front(), "inet_sendmsg_exit");
  }
}

TEST(BytesHooks, AutoRetriesWithKprobesOnlyWhenFexitFailed) {
  KernelFeatures old{.sock_send_length = false, .sendpage_op = true, .packet_sendmsg = true, .kprobes = true};
  const BytesHooks fexit = choose_bytes_hooks(old, "auto");
  ASSERT_EQ(fexit.mode, "fexit");
  EXPECT_TRUE(retry_with_kprobes(old, "auto", fexit));
  EXPECT_FALSE(retry_with_kprobes(old, "fexit", fexit));  // forced: the user asked for fexit
  KernelFeatures no_kprobes = old;
  no_kprobes.kprobes = false;
  EXPECT_FALSE(retry_with_kprobes(no_kprobes, "auto", fexit));
  KernelFeatures modern{.sock_send_length = true, .kprobes = true};
  EXPECT_FALSE(retry_with_kprobes(modern, "auto", choose_bytes_hooks(modern, "auto")));  // the tracepoint failed
}

TEST(StateChoice, SkStorageAndBpfLoopWhereTheKernelHasThem) {  // 5.17 and later
  KernelFeatures k;
  auto c = choose_state(k, "auto", "auto");
  EXPECT_FALSE(c.socket_hash);
  EXPECT_FALSE(c.bounded_walk);
  EXPECT_TRUE(c.notes.empty());
}

TEST(StateChoice, HashStoreAndBoundedWalkBefore5_11) {  // 5.10
  KernelFeatures k{.bpf_loop = false, .sk_storage_tracing = false, .sock_from_file = false};
  auto c = choose_state(k, "auto", "auto");
  EXPECT_TRUE(c.socket_hash);
  EXPECT_TRUE(c.bounded_walk);
  ASSERT_EQ(c.notes.size(), 2u);
  EXPECT_EQ(c.notes[1], "executable paths deeper than 32 components are cut (marked truncated)");
}

TEST(StateChoice, BoundedWalkAloneBefore5_17) {  // 5.11 to 5.16
  KernelFeatures k{.bpf_loop = false};
  auto c = choose_state(k, "auto", "auto");
  EXPECT_FALSE(c.socket_hash);
  EXPECT_TRUE(c.bounded_walk);
}

TEST(StateChoice, HashStoreWhenEitherHalfOfSkStorageIsMissing) {
  EXPECT_TRUE(choose_state(KernelFeatures{.sk_storage_tracing = false}, "auto", "auto").socket_hash);
  EXPECT_TRUE(choose_state(KernelFeatures{.sock_from_file = false}, "auto", "auto").socket_hash);
}

TEST(StateChoice, ForcedChoices) {
  KernelFeatures modern;
  auto c = choose_state(modern, "hash", "bounded");
  EXPECT_TRUE(c.socket_hash);
  EXPECT_TRUE(c.bounded_walk);
  KernelFeatures old{.bpf_loop = false, .sk_storage_tracing = false, .sock_from_file = false};
  EXPECT_EQ(error_of([&] { choose_state(old, "sk_storage", "auto"); }),
            "kernel.socket_state sk_storage: this kernel's tracing programs cannot use sk_storage, or it lacks "
            "bpf_sock_from_file (Linux before 5.11)");
  EXPECT_EQ(error_of([&] { choose_state(old, "auto", "bpf_loop"); }),
            "kernel.path_walk bpf_loop: this kernel has no bpf_loop helper (Linux before 5.17)");
  EXPECT_THROW(choose_state(modern, "array", "auto"), std::runtime_error);
  EXPECT_THROW(choose_state(modern, "auto", "unrolled"), std::runtime_error);
}

TEST(StateChoice, ThisKernel) {
  // 6.18 here: every feature the newest path needs is in its BTF.
  KernelFeatures k = probe_kernel_features();
  if (k.sock_send_length) {
    EXPECT_TRUE(k.bpf_loop);
    EXPECT_TRUE(k.sk_storage_tracing);
    EXPECT_TRUE(k.sock_from_file);
  }
}

}  // namespace
}  // namespace egressd
