/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Ring-buffer records: the header every event starts with, the wakeup
 * policy (ringbuf_wakeup_bytes), and the two socket records several hook
 * families emit (connect result, close). A record that finds the ring full
 * counts as KSTAT_RINGBUF_FULL.
 */
#ifndef EGRESSD_LIB_EMIT_H
#define EGRESSD_LIB_EMIT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/config.h"
#include "lib/maps.h"
#include "lib/kstats.h"
#include "lib/procs.h"

/*
 * The wakeup policy: whether the record that brings the bytes waiting in the
 * ring from before to after wakes the agent. It is woken when they cross a
 * multiple of ringbuf_wakeup_bytes, not at every record above it: while the
 * agent is behind it drains anyway (its epoll stays ready while the ring
 * holds data), and each forced wakeup costs an irq_work, a self-IPI (a VM
 * exit under a hypervisor). A crossing missed in a race between two CPUs is
 * made good at the next multiple, or by the agent's drain timer.
 * ringbuf_wakeup_bytes 0 (egressd trace): every record wakes it.
 */
static __always_inline __u64 wake_flags(__u64 before, __u64 after)
{
	if (!ringbuf_wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	if (after < ringbuf_wakeup_bytes)
		return BPF_RB_NO_WAKEUP;
	if (before > after || before / ringbuf_wakeup_bytes != after / ringbuf_wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* A record built elsewhere (a scratch map, the stack): copied into the ring
 * (size bytes and the ring's 8-byte record header). */
static __always_inline void emit(void *data, __u64 size)
{
	__u64 before = ringbuf_wakeup_bytes ? bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) : 0;

	if (bpf_ringbuf_output(&events, data, size, wake_flags(before, before + size + 8)))
		kstat_inc(KSTAT_RINGBUF_FULL);
}

/* Flags to submit a reserved record of size bytes with: the bytes waiting
 * already count it. */
static __always_inline __u64 submit_flags(__u64 size)
{
	__u64 after = ringbuf_wakeup_bytes ? bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) : 0;

	return wake_flags(after - size - 8, after);
}

/* A fixed-size record written in place: reserve, fill, submit_record. */
static __always_inline void *reserve_record(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e)
		kstat_inc(KSTAT_RINGBUF_FULL);
	return e;
}

#define submit_record(e) bpf_ringbuf_submit((e), submit_flags(sizeof(*(e))))

/* now: the program's bpf_ktime_get_boot_ns(), read once per run. */
static __always_inline void header_init_at(struct event_header *h, __u16 type, __u16 size, __u64 now)
{
	h->type = type;
	h->size = size;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_boot_ns = now;
}

static __always_inline void header_init(struct event_header *h, __u16 type, __u16 size)
{
	header_init_at(h, type, size, bpf_ktime_get_boot_ns());
}

static __always_inline void emit_close_at(struct sock_flow *f, __u32 reason, __u64 now)
{
	struct sock_close_event *e;

	if (!traced(f->owner.tgid))
		return;
	e = reserve_record(sizeof(*e));
	if (!e)
		return;
	e->reason = reason;
	e->_pad = 0;
	e->flow = *f;
	header_init_at(&e->hdr, EVENT_SOCK_CLOSE, sizeof(*e), now);
	submit_record(e);
}

static __always_inline void emit_close(struct sock_flow *f, __u32 reason)
{
	emit_close_at(f, reason, bpf_ktime_get_boot_ns());
}

static __always_inline void emit_result_at(struct sock_flow *f, __u32 result, __s32 error, __u64 now)
{
	struct connect_result_event *e;

	f->connect_state = CONNECT_DONE;
	if (!traced(f->owner.tgid))
		return;
	e = reserve_record(sizeof(*e));
	if (!e)
		return;
	e->cookie = f->cookie;
	e->result = result;
	e->error = error;
	header_init_at(&e->hdr, EVENT_CONNECT_RESULT, sizeof(*e), now);
	submit_record(e);
}

static __always_inline void emit_result(struct sock_flow *f, __u32 result, __s32 error)
{
	emit_result_at(f, result, error, bpf_ktime_get_boot_ns());
}

#endif /* EGRESSD_LIB_EMIT_H */
