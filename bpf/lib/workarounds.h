/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Kernel workarounds: every place where the code has its shape because of a
 * kernel version, a kernel build or a verifier rule rather than because of
 * what egressd does. Each entry names the kernels, the reason and the code;
 * the code says "workaround: NAME" where it applies one. The loader chooses
 * among the fallbacks by loading them (agent/bpf_loader.cpp, docs/KERNELS.md
 * "Kernel workarounds"), never by version number.
 *
 * bounded_path_walk
 *   Kernels: before 5.17 (5.10 in the test matrix): no bpf_loop.
 *   Why: the executable path walk becomes a loop the verifier follows step by
 *   step, kept rolled, EGRESSD_PATH_DEPTH_BOUNDED (32) components deep
 *   instead of PATH_DEPTH_MAX (64); deeper paths are cut and marked.
 *   Code: lib/path_walk.h resolve_path(bounded); sched_process_exec_bounded
 *   (progs/process.bpf.h), dump_task_bounded (progs/running_processes.bpf.h).
 *
 * path_walk_state_in_map
 *   Kernels: those that run the bounded walk (before 5.17).
 *   Why: values read back from a map are not tracked exactly, so the verifier
 *   meets one state per step of the walk instead of one per combination of
 *   component lengths. With the walk's state on the stack the program ran
 *   past the verifier's one million instructions.
 *   Code: struct path_walk inside path_scratch (lib/path_walk.h).
 *
 * name_len_mask_asm
 *   Kernels: some verifiers (6.12).
 *   Why: they lose the bound of a copy clang makes of a path component's
 *   length before the checks; mask_for_verifier() masks the very register
 *   passed to bpf_probe_read_kernel.
 *   Code: lib/path_walk.h path_step().
 *
 * payload_len_mask_asm
 *   Kernels: not tied to a version: it follows clang's code generation.
 *   Why: clang would hand bpf_skb_load_bytes a copy of the length, not the
 *   register the verifier saw bounded; masked in asm, the register passed on
 *   is known to hold 1..EGRESSD_PAYLOAD_MAX.
 *   Code: progs/packets.bpf.h inspect_payload().
 *
 * hash_store (sock_state_hash)
 *   Kernels: before 5.11 (tracing programs may not use sk_storage: 5.10);
 *   kprobe programs on every kernel (bytes_kprobe_pairs); builds that refuse
 *   both live-counter iterators (6.18.44-fc-v1045).
 *   Why: per-socket state then lives in the sk_flows_hash map, keyed by
 *   socket cookie; sock_release deletes the entry and the agent reads live
 *   counters from the map itself. The verifier drops the branch not taken.
 *   Code: lib/config.h sock_state_hash, lib/state_store.h,
 *   progs/outcomes.bpf.h sock_release().
 *
 * tracing_cookie
 *   Kernels: bpf_get_socket_cookie() takes a struct sock in tracing programs
 *   from 5.12 on; never in kprobes; 5.10's BTF lists bpf_get_socket_ptr_cookie
 *   but its verifier refuses it there, so the loader leaves the switch off.
 *   Why: with the hash store a tracing program finds a socket by cookie.
 *   Without the helper it reads skc_cookie, which only a cgroup program
 *   assigns, so a socket older than the agent counts from its first packet.
 *   Code: lib/config.h tracing_cookie, lib/state_store.h hash_key_of(),
 *   progs/bytes.bpf.h adopt_sock().
 *
 * packet_socket_key
 *   Kernels: those that need the hash store.
 *   Why: no cgroup hook sees an AF_PACKET socket, and tracing programs there
 *   cannot make it a cookie: its key is SOCK_KEY_PACKET | inode number.
 *   Code: lib/state_store.h hash_key_of(), SOCK_KEY_PACKET in events.h.
 *
 * live_counters_by_map_iterator
 *   Kernels: builds on which sock->sk from bpf_sock_from_file() is an
 *   untrusted pointer, which bpf_sk_storage_get refuses (6.18.44-fc-v1045;
 *   that build refuses every map iterator too). The map iterator is 5.9+.
 *   Why: dump_sock_files cannot load there; dump_sk_storage reads the same
 *   counters through sk_flows' own iterator.
 *   Code: progs/live_counters.bpf.h.
 *
 * live_iterators_first
 *   Kernels: builds that refuse the live-counter iterators (6.18.44-fc-v1045).
 *   Why: libbpf loads programs in object order, and the loader loads again
 *   without a refused program, so the programs most likely refused come
 *   first and a refusal costs little verification. EGRESSD_NO_LIVE_ITERATORS
 *   leaves them out for tools that load every program of the object
 *   (bpftool prog loadall in tests/deploy/systemd_sandbox_test.sh).
 *   Code: egressd.bpf.c (include order), progs/live_counters.bpf.h.
 *
 * bytes_fexit
 *   Kernels: before 6.3 (no tp_btf/sock_send_length).
 *   Why: the same count at the return of the family's sendmsg:
 *   inet_sendmsg, inet6_sendmsg, packet_sendmsg.
 *   Code: progs/bytes.bpf.h *_sendmsg_exit (EGRESSD_NO_BYTES_FALLBACKS
 *   leaves every bytes fallback out).
 *
 * bytes_sendpage
 *   Kernels: before 6.5 (6.3 and 6.4 have the tracepoint and ->sendpage).
 *   Why: sendfile and splice reach a socket through ->sendpage, which neither
 *   the tracepoint nor the sendmsg hooks see.
 *   Code: progs/bytes.bpf.h inet_sendpage_exit, inet_sendpage_kprobe and
 *   inet_sendpage_kretprobe.
 *
 * bytes_kprobe_pairs
 *   Kernels: no BPF trampoline (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS off,
 *   or an architecture without it), kprobes configured.
 *   Why: neither the tracepoint nor fexit loads. The entry probe notes the
 *   socket per thread (kprobe_send_sk), the return probe counts what the
 *   function returned. kprobe programs cannot use sk_storage, so the agent
 *   pairs them with the hash store. A kretprobe tracks a limited number of
 *   calls in flight; sends beyond it are not counted.
 *   Code: progs/bytes.bpf.h KPROBE_SEND_PAIR.
 *
 * sock_addr_family_fields
 *   Kernels: every one (a verifier rule).
 *   Why: a cgroup sock_addr program may read only the context fields of its
 *   own family (user_ip4 in connect4/sendmsg4, user_ip6 in the 6 ones), so
 *   the family is a constant at each call site of addr_from_sock_addr().
 *   Code: progs/sockets.bpf.h addr_from_sock_addr().
 */
#ifndef EGRESSD_LIB_WORKAROUNDS_H
#define EGRESSD_LIB_WORKAROUNDS_H

/*
 * Mask var with mask in one instruction the compiler can neither move nor
 * copy, so the verifier knows the bound on the very register that is passed
 * on (name_len_mask_asm, payload_len_mask_asm). mask is a constant.
 */
#define mask_for_verifier(var, mask) asm volatile("%[v] &= %[m]" : [v] "+r"(var) : [m] "i"(mask))

#endif /* EGRESSD_LIB_WORKAROUNDS_H */
