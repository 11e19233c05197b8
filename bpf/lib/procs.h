/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Process identity (struct proc_ident: tgid and the group leader's start
 * time) and the process table, the procs map: exec, fork and the task
 * iterator write it; in trace_mode it decides which processes' events go out.
 */
#ifndef EGRESSD_LIB_PROCS_H
#define EGRESSD_LIB_PROCS_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/config.h"
#include "lib/maps.h"
#include "lib/kstats.h"

static __always_inline __u64 task_start_ns(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_boottime);
}

/* Which program task runs: self_exec_id grows at each execve (a u32 before
 * 5.7, hence the sized read). */
static __always_inline __u32 task_exec_id(struct task_struct *task)
{
	return (__u32)BPF_CORE_READ_BITFIELD_PROBED(task, self_exec_id);
}

/* The same for the current task; btf: the program may load from
 * bpf_get_current_task_btf() (tp_btf, fexit), which spares a helper call. */
static __always_inline __u32 current_exec_id(bool btf)
{
	if (btf) {
		struct task_struct *task = bpf_get_current_task_btf();

		return (__u32)BPF_CORE_READ_BITFIELD(task, self_exec_id);
	}
	return task_exec_id((struct task_struct *)bpf_get_current_task());
}

/* pid_tgid: the program's bpf_get_current_pid_tgid(). */
static __always_inline void current_ident_of(__u64 pid_tgid, struct proc_ident *id)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	id->tgid = pid_tgid >> 32;
	id->exec_id = task_exec_id(task);
	id->start_ns = task_start_ns(task);
}

static __always_inline void current_ident(struct proc_ident *id)
{
	current_ident_of(bpf_get_current_pid_tgid(), id);
}

static __always_inline void procs_set(__u32 tgid, __u64 start_ns, const struct proc_state *inherit)
{
	struct proc_state st = {};

	if (inherit)
		st = *inherit;
	st.start_ns = start_ns;
	if (bpf_map_update_elem(&procs, &tgid, &st, BPF_ANY))
		kstat_inc(KSTAT_PROC_MAP_FULL);
}

/* Whether events about process tgid go out (always, outside trace_mode). A
 * process missing from the map (it predates the tracer's task walk, or the
 * map is full) goes out too: the tracer judges it in user space. */
static __always_inline bool traced(__u32 tgid)
{
	struct proc_state *st;

	if (!trace_mode)
		return true;
	st = bpf_map_lookup_elem(&procs, &tgid);
	return !st || (st->flags & (PROC_F_TRACED | PROC_F_UNDECIDED));
}

#endif /* EGRESSD_LIB_PROCS_H */
