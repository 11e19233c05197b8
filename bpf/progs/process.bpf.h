/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Process identity: exec (with the executable's path and argv), fork and
 * exit, from the sched_process_* BTF tracepoints. They keep the procs map,
 * where fork passes a tool's tag to the child.
 * Included once, by egressd.bpf.c, in the order of the object.
 */
#ifndef EGRESSD_PROGS_PROCESS_BPF_H
#define EGRESSD_PROGS_PROCESS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "events.h"
#include "lib/config.h"
#include "lib/maps.h"
#include "lib/generation.h"
#include "lib/kstats.h"
#include "lib/procs.h"
#include "lib/emit.h"
#include "lib/path_walk.h"
#include "lib/exec_record.h"

static __always_inline int on_exec(struct task_struct *p, struct linux_binprm *bprm, bool bounded)
{
	struct exec_event *e = exec_record(p);
	struct proc_state *old;
	__u64 arg_start, arg_end, len;
	__u32 off;

	if (!e)
		return 0;
	e->exe_len = resolve_path(&bprm->file->f_path, e->data, &e->flags, bounded) & (EGRESSD_PATH_MAX - 1);

	off = e->exe_len & (EGRESSD_PATH_MAX - 1);
	long n = bpf_probe_read_kernel_str(&e->data[off], EGRESSD_FILENAME_MAX,
					   BPF_CORE_READ(bprm, filename));
	e->filename_len = n > 0 ? (n - 1) & (EGRESSD_FILENAME_MAX - 1) : 0;

	off += e->filename_len & (EGRESSD_FILENAME_MAX - 1);
	arg_start = BPF_CORE_READ(p, mm, arg_start);
	arg_end = BPF_CORE_READ(p, mm, arg_end);
	len = arg_end > arg_start ? arg_end - arg_start : 0;
	if (len > EGRESSD_ARGS_MAX - 1) {
		len = EGRESSD_ARGS_MAX - 1;
		e->flags |= EXEC_F_ARGS_TRUNCATED;
		kstat_inc(KSTAT_ARGS_TRUNCATED);
	}
	len &= EGRESSD_ARGS_MAX - 1;
	if (bpf_probe_read_user(&e->data[off & (EGRESSD_PATH_MAX + EGRESSD_FILENAME_MAX - 1)], len,
				(void *)arg_start)) {
		kstat_inc(KSTAT_READ_FAIL);
		len = 0;
	}
	e->args_len = len;

	old = bpf_map_lookup_elem(&procs, &e->proc.tgid);
	struct proc_state st = {};

	if (old)
		st = *old;
	e->tool_id = st.tool_id;
	if (trace_mode) {
		__u32 gen = ((st.flags >> PROC_GEN_SHIFT) + 1) & 0xffff;

		st.flags = (st.flags & 0xffff) | (gen << PROC_GEN_SHIFT);
		if (trace_decide && !(st.flags & PROC_F_TRACED))
			st.flags |= PROC_F_UNDECIDED;
		e->exec_gen = gen;
	}
	procs_set(e->proc.tgid, e->proc.start_ns, &st);
	if (trace_mode && !(st.flags & (PROC_F_TRACED | PROC_F_UNDECIDED)))
		return 0;

	__u32 size = exec_size(e);

	header_init(&e->hdr, EVENT_EXEC, size);
	emit(e, size);
	return 0;
}

/* The agent loads one of the two: with bpf_loop where the kernel has it.
 * workaround: bounded_path_walk */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (inactive())
		return 0;
	return on_exec(p, bprm, false);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec_bounded, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (inactive())
		return 0;
	return on_exec(p, bprm, true);
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	struct fork_event e = {};
	struct proc_state *pst;

	if (inactive())
		return 0;
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a new thread, not a new process */

	e.child.tgid = BPF_CORE_READ(child, tgid);
	e.child.exec_id = task_exec_id(child);
	e.child.start_ns = BPF_CORE_READ(child, start_boottime);
	e.parent.tgid = BPF_CORE_READ(parent, tgid);
	e.parent.exec_id = task_exec_id(parent);
	e.parent.start_ns = task_start_ns(parent);
	e.uid = BPF_CORE_READ(child, cred, uid.val);
	e.cgroup_id = BPF_CORE_READ(child, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_STR_INTO(&e.comm, child, comm);

	pst = bpf_map_lookup_elem(&procs, &e.parent.tgid);
	struct proc_state st = {};

	if (pst) {
		st = *pst;
		if (st.flags & PROC_F_NO_FOLLOW) { /* the tool's children are not the tool */
			st.tool_id = 0;
			st.flags &= ~PROC_F_NO_FOLLOW;
		}
	}
	e.tool_id = st.tool_id;
	procs_set(e.child.tgid, e.child.start_ns, &st);
	if (trace_mode && !trace_decide && !(st.flags & PROC_F_TRACED))
		return 0;

	header_init(&e.hdr, EVENT_FORK, sizeof(e));
	emit(&e, sizeof(e));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *p)
{
	struct exit_event e = {};

	if (inactive())
		return 0;
	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0; /* other threads of the group still run */

	e.proc.tgid = BPF_CORE_READ(p, tgid);
	e.proc.start_ns = task_start_ns(p);
	e.exit_code = BPF_CORE_READ(p, exit_code);
	bool emit_it = trace_decide || traced(e.proc.tgid); /* traced(): always outside trace_mode */

	bpf_map_delete_elem(&procs, &e.proc.tgid);
	if (!emit_it)
		return 0;

	header_init(&e.hdr, EVENT_EXIT, sizeof(e));
	emit(&e, sizeof(e));
	return 0;
}

#endif /* EGRESSD_PROGS_PROCESS_BPF_H */
