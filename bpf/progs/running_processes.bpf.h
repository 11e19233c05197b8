/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Processes that already run when the agent starts: iter/task writes one
 * exec record per process, as if it had just exec'd (EXEC_F_FROM_ITER).
 * Included once, by egressd.bpf.c, in the order of the object.
 */
#ifndef EGRESSD_PROGS_RUNNING_PROCESSES_BPF_H
#define EGRESSD_PROGS_RUNNING_PROCESSES_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/maps.h"
#include "lib/procs.h"
#include "lib/emit.h"
#include "lib/path_walk.h"
#include "lib/exec_record.h"

/* Processes that already run when the agent starts. */
static __always_inline int on_task(struct bpf_iter__task *ctx, bool bounded)
{
	struct task_struct *task = ctx->task;
	struct exec_event *e;
	struct file *exe;

	if (!task || task->pid != task->tgid)
		return 0;
	e = exec_record(task);
	if (!e)
		return 0;
	e->flags = EXEC_F_FROM_ITER;
	exe = BPF_CORE_READ(task, mm, exe_file);
	if (exe)
		e->exe_len = resolve_path(&exe->f_path, e->data, &e->flags, bounded) &
			     (EGRESSD_PATH_MAX - 1);
	struct proc_state *st = bpf_map_lookup_elem(&procs, &e->proc.tgid);

	if (!st)
		procs_set(e->proc.tgid, e->proc.start_ns, NULL);
	else
		e->exec_gen = st->flags >> PROC_GEN_SHIFT;

	__u32 size = exec_size(e);

	header_init(&e->hdr, EVENT_EXEC, size);
	bpf_seq_write(ctx->meta->seq, e, size);
	return 0;
}

/* The agent loads one of the two: with bpf_loop where the kernel has it.
 * workaround: bounded_path_walk */
SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	return on_task(ctx, false);
}

SEC("iter/task")
int dump_task_bounded(struct bpf_iter__task *ctx)
{
	return on_task(ctx, true);
}

#endif /* EGRESSD_PROGS_RUNNING_PROCESSES_BPF_H */
