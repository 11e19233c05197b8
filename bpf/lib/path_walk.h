/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The executable's path, resolved in the kernel: a walk over dentries and
 * mounts from a struct path to the root of its mount tree, with bpf_loop
 * where the kernel has it, else a bounded loop (lib/workarounds.h).
 */
#ifndef EGRESSD_LIB_PATH_WALK_H
#define EGRESSD_LIB_PATH_WALK_H

#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include "events.h"
#include "lib/kstats.h"
#include "lib/workarounds.h"

#define PATH_DEPTH_MAX 64
#define NAME_MASK 255

/* Where the executable path walk is. It lives in the scratch map, not on the
 * stack: values read back from a map are not tracked exactly, so the
 * verifier sees one state per step of the bounded walk instead of one per
 * combination of component lengths (which no budget covers).
 * workaround: path_walk_state_in_map */
struct path_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	__u32 off; /* the path so far is data[off, EGRESSD_PATH_MAX) */
	__u32 complete;
};

struct path_buf {
	char data[EGRESSD_PATH_MAX + NAME_MASK + 1];
	struct path_walk w;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_buf);
} path_scratch SEC(".maps");

/* One step of the walk: prepend a component, or cross to the parent mount.
 * ctx points to a stack slot holding the scratch buffer (bpf_loop passes
 * only stack pointers to its callback). */
static long path_step(__u32 index, void *ctx)
{
	struct path_buf *b = *(struct path_buf **)ctx;
	struct path_walk *w = &b->w;
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

	if (dentry == mnt_root || dentry == parent) {
		struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);

		if (dentry == mnt_root && mnt != mnt_parent) {
			w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			w->mnt = mnt_parent;
			w->vfsmnt = &mnt_parent->mnt;
			return 0;
		}
		w->complete = 1;
		return 1;
	}

	__u32 len = BPF_CORE_READ(dentry, d_name.len) & NAME_MASK;
	const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
	__u32 off = w->off;

	if (len + 2 > off) /* keep one byte for the leading '/' */
		return 1;
	off -= len;
	/* Masked again in asm, on the very register passed on: some verifiers
	 * (6.12) lose the bound of a copy clang makes before the checks above.
	 * workaround: name_len_mask_asm */
	mask_for_verifier(len, NAME_MASK);
	if (bpf_probe_read_kernel(&b->data[off & (EGRESSD_PATH_MAX - 1)], len, name))
		kstat_inc(KSTAT_READ_FAIL);
	off -= 1;
	b->data[off & (EGRESSD_PATH_MAX - 1)] = '/';
	w->off = off;
	w->dentry = parent;
	return 0;
}

/*
 * A file that is its own dentry's root without being its mount's root has no
 * place in a tree: memfd_create's, or another anonymous file's. The kernel
 * names it "/NAME (deleted)" (simple_dname), and so does this.
 */
static __always_inline __u32 pseudo_file_name(struct dentry *dentry, char *out, __u16 *flags)
{
	__u32 len = BPF_CORE_READ(dentry, d_name.len) & NAME_MASK;
	const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);

	*flags |= EXEC_F_FILELESS;
	out[0] = '/';
	mask_for_verifier(len, NAME_MASK);
	if (bpf_probe_read_kernel(&out[1], len, name))
		kstat_inc(KSTAT_READ_FAIL);
	len &= NAME_MASK;
	/* Byte by byte: a static string would be a .rodata variable whose
	 * BTF the kernel refuses ("Invalid offset"). */
	char *tail = &out[1 + len];
	tail[0] = ' ';
	tail[1] = '(';
	tail[2] = 'd';
	tail[3] = 'e';
	tail[4] = 'l';
	tail[5] = 'e';
	tail[6] = 't';
	tail[7] = 'e';
	tail[8] = 'd';
	tail[9] = ')';
	return 1 + len + 10;
}

/*
 * Walk dentries and mounts from path to the root of its mount tree, writing
 * the components backwards into a scratch buffer, then copy the result to
 * out. Returns the length written (no terminating NUL).
 */
static __always_inline __u32 resolve_path(const struct path *path, char *out, __u16 *flags, bool bounded)
{
	__u32 zero = 0, off;
	struct path_buf *b = bpf_map_lookup_elem(&path_scratch, &zero);

	if (!b)
		return 0;
	b->w.dentry = BPF_CORE_READ(path, dentry);
	b->w.vfsmnt = BPF_CORE_READ(path, mnt);
	b->w.mnt = container_of(b->w.vfsmnt, struct mount, mnt);
	b->w.off = EGRESSD_PATH_MAX;
	b->w.complete = 0;
	if (!b->w.dentry || !b->w.vfsmnt)
		return 0;
	struct dentry *dentry = b->w.dentry;
	struct vfsmount *vfsmnt = b->w.vfsmnt;

	if (dentry == BPF_CORE_READ(dentry, d_parent) && dentry != BPF_CORE_READ(vfsmnt, mnt_root))
		return pseudo_file_name(dentry, out, flags);

	if (bounded) {
		/* No bpf_loop (before 5.17): a loop the verifier follows.
		 * workaround: bounded_path_walk */
#pragma clang loop unroll(disable)
		for (__u32 i = 0; i < EGRESSD_PATH_DEPTH_BOUNDED; i++)
			if (path_step(i, &b))
				break;
	} else {
		bpf_loop(PATH_DEPTH_MAX, path_step, &b, 0);
	}
	if (!b->w.complete) {
		*flags |= EXEC_F_EXE_TRUNCATED;
		kstat_inc(KSTAT_PATH_TRUNCATED);
	}
	off = b->w.off;
	if (off >= EGRESSD_PATH_MAX) {
		out[0] = '/';
		return 1;
	}
	__u32 len = (EGRESSD_PATH_MAX - off) & (EGRESSD_PATH_MAX - 1);

	bpf_probe_read_kernel(out, len, &b->data[off & (EGRESSD_PATH_MAX - 1)]);
	return len;
}

#endif /* EGRESSD_LIB_PATH_WALK_H */
