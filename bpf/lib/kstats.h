/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The kernel side's own health: every early return that loses information
 * counts itself in kstats (enum egressd_kstat), which the agent exports.
 */
#ifndef EGRESSD_LIB_KSTATS_H
#define EGRESSD_LIB_KSTATS_H

#include "lib/maps.h"

static __always_inline void kstat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&kstats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

#endif /* EGRESSD_LIB_KSTATS_H */
