/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The exec record (struct exec_event, built in the exec_scratch map): filled
 * by the exec tracepoint for a new program and by the task iterator for
 * processes that already run.
 */
#ifndef EGRESSD_LIB_EXEC_RECORD_H
#define EGRESSD_LIB_EXEC_RECORD_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/maps.h"
#include "lib/procs.h"

/* Fill the identity part of an exec record for task; exe path from its mm. */
static __always_inline struct exec_event *exec_record(struct task_struct *task)
{
	__u32 zero = 0;
	struct exec_event *e = bpf_map_lookup_elem(&exec_scratch, &zero);
	struct task_struct *parent;

	if (!e)
		return NULL;
	e->proc.tgid = BPF_CORE_READ(task, tgid);
	e->proc.exec_id = task_exec_id(task);
	e->proc.start_ns = task_start_ns(task);
	parent = BPF_CORE_READ(task, real_parent);
	e->parent.tgid = BPF_CORE_READ(parent, tgid);
	e->parent.exec_id = task_exec_id(parent);
	e->parent.start_ns = task_start_ns(parent);
	e->uid = BPF_CORE_READ(task, cred, uid.val);
	e->gid = BPF_CORE_READ(task, cred, gid.val);
	e->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	e->exe_len = 0;
	e->filename_len = 0;
	e->args_len = 0;
	e->flags = 0;
	e->tool_id = 0;
	e->exec_gen = 0;
	return e;
}

static __always_inline __u32 exec_size(struct exec_event *e)
{
	return EXEC_EVENT_FIXED_SIZE + (e->exe_len & (EGRESSD_PATH_MAX - 1)) +
	       (e->filename_len & (EGRESSD_FILENAME_MAX - 1)) + (e->args_len & (EGRESSD_ARGS_MAX - 1));
}

#endif /* EGRESSD_LIB_EXEC_RECORD_H */
