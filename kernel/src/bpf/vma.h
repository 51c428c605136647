/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The file a successful mmap(2) really mapped, read from the VMA it created.
 *
 * Backends that see the call only from outside (syscall tracepoints) hold no
 * reference to any file: a `struct file *` taken from the fd table at entry
 * may be closed, freed and reused by another thread before the call returns
 * (open + dup2 + close on the same fd number), and reading it then names the
 * wrong file or garbage. So nothing is taken at entry; at return the kernel's
 * own answer is looked up: the VMA at the returned address.
 *
 * bpf_find_vma() takes the mmap lock for reading with a trylock and runs the
 * callback while holding it. The VMA holds a reference on vm_file, and the VMA
 * cannot go away while the lock is held, so every fact about the file (path,
 * dev, inode, ctime, open flags, the detection facts) is read INSIDE the
 * callback; nothing found there is dereferenced after it returns.
 *
 * When no VMA can be read the record goes out without file facts, with the
 * reason in file_source and counted (MW_COUNTER_VMA_*), never silently:
 *   - the trylock failed: another thread of the process holds the mmap lock
 *     for writing (mmap, munmap, mprotect, brk) or waits for it;
 *   - nothing is mapped at the address any more (another thread unmapped it);
 *   - the VMA there is not this call's: it neither starts at the returned
 *     address nor is a merge of this call's range into its predecessor
 *     (same file, vm_pgoff + distance == the pgoff asked for), or it has no
 *     file at all.
 * What remains: another thread could unmap the new mapping and map a file of
 * its choice at the very same address, starting there, before this call's
 * return is traced (microseconds). The record then names a file that this
 * process really mapped there, itself reported by its own record.
 */
#ifndef MAPWATCH_VMA_H
#define MAPWATCH_VMA_H

#include "file.h"

#define MW_EBUSY 16
#define MW_ENOENT 2
#define MW_EINVAL 22

/*
 * How long to keep trying for the mmap lock: a writer (another thread's mmap,
 * munmap, mprotect, brk) usually holds it for a few microseconds, and gives
 * it up between two calls. Spinning on the trylock for up to this budget
 * costs the mapping thread only, and only when its process contends for its
 * own mmap lock. Measured on the fd-swap workload with a third thread doing
 * mmap + touch + munmap of 64 KiB in a loop (6.18, 2 busy vCPUs): with 16
 * back-to-back tries 75% of the lookups failed; with a budget of 50 us,
 * 0.4-9% (a writer preempted while holding the lock outlasts any budget).
 */
#ifndef MW_VMA_WAIT_NS
#define MW_VMA_WAIT_NS 50000
#endif
#define MW_VMA_MAX_TRIES 65536 /* bound for the verifier; the time budget ends first */

/* The callback's context: what to check, and where to write the facts. */
struct mw_vma_lookup {
	__u64 addr;           /* the address mmap returned */
	__u64 pgoff;          /* the file offset asked for, in pages */
	struct mw_file *info; /* the record's file facts */
	char *buf;            /* mw_scratch.path_buf */
	char *out;            /* the record's path */
	long err;             /* bpf_find_vma's result of the last attempt */
	__u64 deadline;       /* CLOCK_MONOTONIC ns after which no new attempt starts */
	__s64 vm_flags;       /* the VMA's flags when it is this call's; -1 otherwise */
	__u32 source;         /* result: MW_FILE_SOURCE_VMA or _VMA_MISMATCH */
	__u32 _pad0;
};

/* Runs under the mmap lock (read): `vma` and its vm_file stay valid until it returns. */
static long mw_vma_file_cb(struct task_struct *task, struct vm_area_struct *vma,
			   struct mw_vma_lookup *l)
{
	struct file *file = BPF_CORE_READ(vma, vm_file);
	__u64 start = BPF_CORE_READ(vma, vm_start);
	__u64 pgoff = BPF_CORE_READ(vma, vm_pgoff);
	__u64 addr = l->addr;

	/* bpf_find_vma guarantees vm_start <= addr < vm_end. */
	if (!file || (start != addr && pgoff + ((addr - start) >> MW_PAGE_SHIFT) != l->pgoff)) {
		l->source = MW_FILE_SOURCE_VMA_MISMATCH;
		return 0;
	}
	mw_file_info(file, l->info, l->buf, l->out);
	l->vm_flags = BPF_CORE_READ(vma, vm_flags);
	l->source = MW_FILE_SOURCE_VMA;
	return 0;
}

/* One attempt; stops the loop unless the lock was busy and time is left. */
static long mw_vma_try(__u32 index, struct mw_vma_lookup *l)
{
	l->err = bpf_find_vma(bpf_get_current_task_btf(), l->addr, mw_vma_file_cb, l, 0);
	if (l->err != -MW_EBUSY)
		return 1;
	return bpf_ktime_get_ns() > l->deadline;
}

/*
 * Fills `info` and `out` with the file mapped at `addr` by a call that asked
 * for file page `pgoff`, and `*vm_flags` with its VMA's flags (-1 when not
 * read); returns MW_FILE_SOURCE_VMA, or why not (and counts it).
 */
static __always_inline __u16 mw_vma_file(__u64 addr, __u64 pgoff, struct mw_file *info, char *buf,
					 char *out, __s64 *vm_flags)
{
	struct mw_vma_lookup l = {
		.addr = addr,
		.pgoff = pgoff,
		.info = info,
		.buf = buf,
		.out = out,
		.err = -MW_EBUSY,
		.vm_flags = -1,
		.source = MW_FILE_SOURCE_LOOKUP_FAILED,
	};
	long err;

	__builtin_memset(info, 0, sizeof(*info));
	l.deadline = bpf_ktime_get_ns() + MW_VMA_WAIT_NS;
	bpf_loop(MW_VMA_MAX_TRIES, mw_vma_try, &l, 0);
	err = l.err;
	if (err == -MW_EBUSY)
		l.source = MW_FILE_SOURCE_VMA_BUSY;
	else if (err == -MW_ENOENT)
		l.source = MW_FILE_SOURCE_VMA_MISSING;
	else if (err)
		l.source = MW_FILE_SOURCE_LOOKUP_FAILED;

	switch (l.source) {
	case MW_FILE_SOURCE_VMA:
		break;
	case MW_FILE_SOURCE_VMA_BUSY:
		mw_count(MW_COUNTER_VMA_BUSY);
		break;
	case MW_FILE_SOURCE_VMA_MISSING:
		mw_count(MW_COUNTER_VMA_MISSING);
		break;
	case MW_FILE_SOURCE_VMA_MISMATCH:
		mw_count(MW_COUNTER_VMA_MISMATCH);
		break;
	default:
		mw_count(MW_COUNTER_VMA_LOOKUP_FAILED);
		break;
	}
	if (l.source != MW_FILE_SOURCE_VMA)
		__builtin_memset(info, 0, sizeof(*info)); /* nothing half-read goes out */
	*vm_flags = l.source == MW_FILE_SOURCE_VMA ? l.vm_flags : -1;
	return l.source;
}

#endif /* MAPWATCH_VMA_H */
