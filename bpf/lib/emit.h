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

static __always_inline __u64 ringbuf_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= ringbuf_wakeup_bytes ?
		       BPF_RB_FORCE_WAKEUP :
		       BPF_RB_NO_WAKEUP;
}

static __always_inline void emit(void *data, __u64 size)
{
	if (bpf_ringbuf_output(&events, data, size, ringbuf_flags()))
		kstat_inc(KSTAT_RINGBUF_FULL);
}

static __always_inline void header_init(struct event_header *h, __u16 type, __u16 size)
{
	h->type = type;
	h->size = size;
	h->cpu = bpf_get_smp_processor_id();
	h->ts_boot_ns = bpf_ktime_get_boot_ns();
}

static __always_inline void emit_close(struct sock_flow *f, __u32 reason)
{
	struct sock_close_event e = {};

	if (!traced(f->owner.tgid))
		return;
	e.reason = reason;
	e.flow = *f;
	header_init(&e.hdr, EVENT_SOCK_CLOSE, sizeof(e));
	emit(&e, sizeof(e));
}

static __always_inline void emit_result(struct sock_flow *f, __u32 result, __s32 error)
{
	struct connect_result_event e = {};

	f->connect_state = CONNECT_DONE;
	if (!traced(f->owner.tgid))
		return;
	e.cookie = f->cookie;
	e.result = result;
	e.error = error;
	header_init(&e.hdr, EVENT_CONNECT_RESULT, sizeof(e));
	emit(&e, sizeof(e));
}

#endif /* EGRESSD_LIB_EMIT_H */
