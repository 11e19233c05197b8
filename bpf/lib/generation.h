/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Upgrades without a byte lost or counted twice (issue 16). The agent of a
 * newer build takes over pinned state by loading its programs against the
 * pinned maps with my_generation one above the pinned generation word,
 * attaching them next to the old ones, then writing the word: from that
 * store on the old programs return at once and the new ones count. The old
 * links are unpinned after. Every hooked program starts with this test;
 * iterators, which the agent runs itself, do not.
 */
#ifndef EGRESSD_LIB_GENERATION_H
#define EGRESSD_LIB_GENERATION_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "lib/config.h"
#include "lib/maps.h"

static __always_inline bool inactive(void)
{
	__u32 zero = 0;
	__u32 *g = bpf_map_lookup_elem(&generation, &zero);

	return !g || *g != my_generation;
}

#endif /* EGRESSD_LIB_GENERATION_H */
