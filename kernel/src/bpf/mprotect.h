/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The third event, security_file_mprotect: a change of protection by
 * mprotect(2) or pkey_mprotect(2), and the W->X history it feeds.
 *
 * Backends:
 *   lsm/file_mprotect(vma, reqprot, prot, ret)  the hook, once per VMA of the range
 *   fexit security_file_mprotect(vma, reqprot, prot) -> 0 / -errno
 *   kprobe + kretprobe security_file_mprotect
 *   syscall_tracepoint: sys_{enter,exit}_{mprotect,pkey_mprotect}
 *
 * Kernel backends run inside do_mprotect_pkey with the mmap lock held for
 * writing, before the VMA is changed: `vma` (an argument) gives the previous
 * protection (vm_flags) and its file, held by the VMA. The range the syscall
 * asked for and the pkey are read from the task's syscall registers
 * (bpf_task_pt_regs); a call that fails before the hook (EINVAL, ENOMEM on a
 * hole) is not seen there.
 *
 * syscall_tracepoint holds no reference: at entry the VMA at `start` is
 * looked up with bpf_find_vma (its flags and range read inside the callback,
 * under the mmap lock; the vm_file pointer kept as a number, never
 * dereferenced); at exit the VMA at `start` is looked up again and the file
 * facts are read inside the callback, only if it is still the same file
 * (mprotect never changes vm_file; another thread may have replaced the
 * mapping meanwhile: then file_source says VMA_MISMATCH). The result is the
 * syscall's. One record per call; the VMAs after the first (up to
 * MW_MPROT_SPAN_VMAS) are folded into prev_prot and the MW_MPROT_SPAN* flags.
 * A call that fails after its first VMA (ENOMEM at a hole, EACCES or EPERM on
 * a later VMA) has changed the VMAs before: any failure but EINVAL of a call
 * whose first VMA was read is judged as a change that happened.
 *
 * W->X history (mw_wx_history_map): ranges of an address space that were
 * writable and were made non-writable by a successful mprotect are
 * remembered, so a later mprotect adding PROT_EXEC to any part of them is
 * flagged MW_MPROT_WAS_WRITABLE even though the VMA is not writable any more
 * (the RW -> R -> RX evasion). Kept in the kernel so every backend (and
 * enforcement) shares it; updated for every call, before filters and rate
 * limit (a filtered record still teaches the history).
 *
 * Keyed by the address space, not the process: x86's mm->context.ctx_id, a
 * number no other address space ever had (so a stale entry can never be
 * matched by a later process), shared by CLONE_VM children and threads. A
 * fork copies the parent's history to the child's new address space
 * (sched_process_fork). Ranges that touch are merged; when all
 * MW_WX_RANGES slots are taken, the new range is merged with the nearest
 * one: the result also covers the gap between them, so it is marked coarse
 * and a PROT_EXEC over it is MW_MPROT_HISTORY_INCOMPLETE (fail closed), and
 * counted MW_COUNTER_WX_HISTORY_EVICTED. An address space that finds no room
 * among MW_WX_SPACES (MW_COUNTER_WX_HISTORY_FULL) is remembered as untracked:
 * each PROT_EXEC it adds is MW_MPROT_HISTORY_INCOMPLETE. When a process
 * that used a history dies (all threads) or execs, the history is forgotten
 * unless its address space is still in use (a CLONE_VM child or parent):
 * the entry keeps the mm pointer, and only that mm still carrying this
 * ctx_id with users left keeps it (a freed mm read by the probe fails the
 * test). A range moved by
 * mremap(2) moves with it (64-bit calls: a 32-bit mremap is not seen).
 */
#ifndef MAPWATCH_MPROTECT_H
#define MAPWATCH_MPROTECT_H

#include "emit.h"
#include "enforce.h"

#define MW_VM_PROT_BITS 0xfULL /* VM_READ | VM_WRITE | VM_EXEC | VM_SHARED == PROT_* values */
#define MW_PAGE_MASK (~((1ULL << MW_PAGE_SHIFT) - 1))
/* x86-64 syscall numbers, as orig_ax holds them */
#define MW_NR_MPROTECT 10
#define MW_NR_PKEY_MPROTECT 329

#define MW_WX_RANGES 32
#define MW_WX_SPACES 8192
#define MW_WX_UNTRACKED 1024

/* One call between entry and return. */
struct mw_mprot_call {
	__u64 start;
	__u64 len;
	__u64 reqprot;
	__u64 prot;
	__u64 vma_start;
	__u64 vma_end;
	__u64 prev_prot;
	__u64 file; /* tracepoint: vm_file at entry, compared only; kprobe: unused */
	__u64 vma;  /* kprobe: the hook's vma argument, valid until it returns */
	__s32 pkey;
	__u16 flags; /* MW_MPROT_* */
	__u16 file_source;
	/* lsm backend: what enforcement did (enforce.h); zero elsewhere. */
	__u32 enforced; /* MW_REASON_* acted on */
	__u16 action;   /* MW_ACTION_* */
	__u16 _pad0;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_PENDING_ENTRIES);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct mw_mprot_call);
} mw_pending_tp_mprotect SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_PENDING_ENTRIES);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct mw_mprot_call);
} mw_pending_kprobe_mprotect SEC(".maps");

/* mremap(2) calls in flight (the history follows a moved range). */
#define MW_MREMAP_DONTUNMAP 4

struct mw_mremap_call {
	__u64 old_addr;
	__u64 old_len;
	__u64 new_len;
	__u64 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_PENDING_ENTRIES);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct mw_mremap_call);
} mw_pending_mremap SEC(".maps");

struct mw_wx_history {
	__u64 start[MW_WX_RANGES];
	__u64 end[MW_WX_RANGES]; /* 0: a free slot */
	__u64 mm;     /* the mm_struct, read (never trusted) to tell whether it is still in use */
	__u32 coarse; /* bit i: range i was merged with another to make room */
	__u32 lost;   /* a range could not be followed (mremap): every judgement is incomplete */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_WX_SPACES);
	__type(key, __u64); /* mm->context.ctx_id */
	__type(value, struct mw_wx_history);
} mw_wx_history_map SEC(".maps");

/* The address space whose history a process used, by tgid (at its death its mm is gone). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_WX_SPACES);
	__type(key, __u32);
	__type(value, __u64);
} mw_wx_owner_map SEC(".maps");

/* Address spaces that found no room in the history: judged incomplete. Value: owner tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_WX_UNTRACKED);
	__type(key, __u64);
	__type(value, __u32);
} mw_wx_untracked_map SEC(".maps");

/* Where a new history is built (too large for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mw_wx_history);
} mw_wx_fresh_map SEC(".maps");

/* Per-CPU workspace of this event (its own: the other events' union stays as it is). */
struct mw_mprot_scratch {
	struct mw_security_file_mprotect ev;
	char path_buf[MW_PATH_MAX * 2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mw_mprot_scratch);
} mw_mprot_scratch_map SEC(".maps");

/* ---- W->X history ---- */

/* The task's address space (0: none, a kernel thread). */
static __always_inline __u64 mw_space_of(struct task_struct *task)
{
	struct mm_struct *mm = BPF_CORE_READ(task, mm);

	return mm ? BPF_CORE_READ(mm, context.ctx_id) : 0;
}

static __always_inline __u64 mw_current_space(void)
{
	return mw_space_of((struct task_struct *)bpf_get_current_task());
}

static __always_inline __u64 mw_current_mm_ptr(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return (__u64)BPF_CORE_READ(task, mm);
}

/* `tgid` uses `space`: its death or exec is when the history may go. */
static __always_inline void mw_wx_used_by(__u32 tgid, __u64 space)
{
	__u64 *known = bpf_map_lookup_elem(&mw_wx_owner_map, &tgid);

	if (!known || *known != space)
		bpf_map_update_elem(&mw_wx_owner_map, &tgid, &space, BPF_ANY);
}

/* A walk over the ranges of one history (bpf_loop: one verification of the step). */
struct mw_wx_walk {
	struct mw_wx_history *h;
	__u64 start;
	__u64 end;
	__u64 best_gap; /* remember: distance to the nearest range */
	__s32 free_slot;
	__s32 nearest;
	__u32 merged; /* remember: the range joined one that touches it */
	__u16 flags;  /* check: MW_MPROT_WAS_WRITABLE, MW_MPROT_HISTORY_INCOMPLETE */
	__u16 _pad0;
};

static long mw_wx_check_step(__u32 i, struct mw_wx_walk *w)
{
	struct mw_wx_history *h = w->h;

	if (i >= MW_WX_RANGES)
		return 1;
	if (!h->end[i] || h->start[i] >= w->end || w->start >= h->end[i])
		return 0;
	if (h->coarse & (1U << i))
		w->flags |= MW_MPROT_HISTORY_INCOMPLETE;
	else
		w->flags |= MW_MPROT_WAS_WRITABLE;
	return 0;
}

/*
 * What the history knows of [start, end) in `space`: MW_MPROT_WAS_WRITABLE
 * (it overlaps a range that was writable), MW_MPROT_HISTORY_INCOMPLETE (it
 * overlaps a merged range, a range was lost, or the space has no history room).
 */
static __always_inline __u16 mw_wx_check(__u64 space, __u64 start, __u64 end)
{
	struct mw_wx_history *h = bpf_map_lookup_elem(&mw_wx_history_map, &space);
	struct mw_wx_walk w = { .h = h, .start = start, .end = end };

	if (!h)
		return bpf_map_lookup_elem(&mw_wx_untracked_map, &space) ? MW_MPROT_HISTORY_INCOMPLETE
									 : 0;
	if (h->lost)
		w.flags |= MW_MPROT_HISTORY_INCOMPLETE;
	bpf_loop(MW_WX_RANGES, mw_wx_check_step, &w, 0);
	/* A process that only reads the history (a CLONE_VM parent) must forget it too. */
	mw_wx_used_by(bpf_get_current_pid_tgid() >> 32, space);
	return w.flags;
}

/* A new history for `space` owned by `tgid`, holding [start, end). */
static __always_inline void mw_wx_create(__u64 space, __u32 tgid, __u64 start, __u64 end)
{
	__u32 zero = 0;
	struct mw_wx_history *fresh = bpf_map_lookup_elem(&mw_wx_fresh_map, &zero);

	if (!fresh)
		return;
	__builtin_memset(fresh, 0, sizeof(*fresh));
	fresh->start[0] = start;
	fresh->end[0] = end;
	fresh->mm = mw_current_mm_ptr();
	if (bpf_map_update_elem(&mw_wx_history_map, &space, fresh, BPF_NOEXIST)) {
		mw_count(MW_COUNTER_WX_HISTORY_FULL);
		bpf_map_update_elem(&mw_wx_untracked_map, &space, &tgid, BPF_ANY);
	}
	mw_wx_used_by(tgid, space);
}

static long mw_wx_remember_step(__u32 i, struct mw_wx_walk *w)
{
	struct mw_wx_history *h = w->h;
	__u64 s, e, gap;

	if (i >= MW_WX_RANGES)
		return 1;
	s = h->start[i];
	e = h->end[i];
	if (!e) {
		if (w->free_slot < 0)
			w->free_slot = i;
		return 0;
	}
	if (s <= w->end && w->start <= e) {
		/* Touches or overlaps: one range for both. */
		h->start[i] = s < w->start ? s : w->start;
		h->end[i] = e > w->end ? e : w->end;
		w->merged = 1;
		return 1;
	}
	gap = e < w->start ? w->start - e : s - w->end;
	if (gap < w->best_gap) {
		w->best_gap = gap;
		w->nearest = i;
	}
	return 0;
}

/* Remembers that [start, end) of `space` was writable until now. */
static __always_inline void mw_wx_remember(__u32 tgid, __u64 space, __u64 start, __u64 end)
{
	struct mw_wx_history *h = bpf_map_lookup_elem(&mw_wx_history_map, &space);
	struct mw_wx_walk w = {
		.h = h, .start = start, .end = end, .best_gap = ~0ULL, .free_slot = -1,
	};
	__u32 slot;

	if (!h) {
		mw_wx_create(space, tgid, start, end);
		return;
	}
	mw_wx_used_by(tgid, space);
	bpf_loop(MW_WX_RANGES, mw_wx_remember_step, &w, 0);
	if (w.merged)
		return;
	if (w.free_slot >= 0) {
		slot = w.free_slot & (MW_WX_RANGES - 1);
		h->start[slot] = start;
		h->end[slot] = end;
		return;
	}
	/* No room: merged with the nearest range, gap included (judged incomplete). */
	slot = w.nearest & (MW_WX_RANGES - 1);
	if (h->start[slot] > start)
		h->start[slot] = start;
	if (h->end[slot] < end)
		h->end[slot] = end;
	h->coarse |= 1U << slot;
	mw_count(MW_COUNTER_WX_HISTORY_EVICTED);
}

/* Whether the mm at `mm_ptr` is still the address space `space`, with users left. */
static __always_inline bool mw_wx_space_alive(__u64 mm_ptr, __u64 space)
{
	struct mm_struct *mm = (struct mm_struct *)mm_ptr;

	return mm && BPF_CORE_READ(mm, context.ctx_id) == space &&
	       BPF_CORE_READ(mm, mm_users.counter) > 0;
}

/*
 * Process `tgid` died or exec'd (its address space is gone from it): the
 * history of the space it used goes, unless another process still uses it.
 */
static __always_inline void mw_wx_forget_process(__u32 tgid)
{
	__u64 *used = bpf_map_lookup_elem(&mw_wx_owner_map, &tgid);
	struct mw_wx_history *h;
	__u64 space;

	if (!used)
		return;
	space = *used;
	bpf_map_delete_elem(&mw_wx_owner_map, &tgid);
	h = bpf_map_lookup_elem(&mw_wx_history_map, &space);
	if (h && mw_wx_space_alive(h->mm, space))
		return;
	bpf_map_delete_elem(&mw_wx_history_map, &space);
	bpf_map_delete_elem(&mw_wx_untracked_map, &space);
}

/*
 * sched_process_fork: a child with its own address space starts with a copy
 * of its parent's history (the memory is a copy too). A CLONE_VM child shares
 * the parent's history by its key; threads need nothing.
 */
static __always_inline int mw_wx_fork(struct task_struct *parent, struct task_struct *child)
{
	__u64 parent_space, child_space;
	struct mw_wx_history *h;
	__u32 child_tgid = BPF_CORE_READ(child, tgid);

	if (child_tgid == BPF_CORE_READ(parent, tgid))
		return 0; /* a thread */
	parent_space = mw_space_of(parent);
	child_space = mw_space_of(child);
	if (!parent_space || !child_space || child_space == parent_space)
		return 0;
	h = bpf_map_lookup_elem(&mw_wx_history_map, &parent_space);
	if (!h) {
		if (bpf_map_lookup_elem(&mw_wx_untracked_map, &parent_space)) {
			bpf_map_update_elem(&mw_wx_untracked_map, &child_space, &child_tgid, BPF_ANY);
			mw_wx_used_by(child_tgid, child_space);
		}
		return 0;
	}
	if (bpf_map_update_elem(&mw_wx_history_map, &child_space, h, BPF_NOEXIST)) {
		mw_count(MW_COUNTER_WX_HISTORY_FULL);
		bpf_map_update_elem(&mw_wx_untracked_map, &child_space, &child_tgid, BPF_ANY);
	} else {
		h = bpf_map_lookup_elem(&mw_wx_history_map, &child_space);
		if (h)
			h->mm = (__u64)BPF_CORE_READ(child, mm);
	}
	mw_wx_used_by(child_tgid, child_space);
	return 0;
}

/*
 * The range this record is about: the part of the asked range inside the VMA
 * (kernel backends see one VMA per record), or whichever of the two is known.
 */
static __always_inline void mw_mprot_range(struct mw_mprot_call *c, __u64 *start, __u64 *end)
{
	__u64 s = 0, e = 0;

	if (c->flags & MW_MPROT_RANGE) {
		s = c->start & MW_PAGE_MASK;
		e = c->start + c->len;
	}
	if (c->flags & MW_MPROT_VMA) {
		if (!(c->flags & MW_MPROT_RANGE)) {
			s = c->vma_start;
			e = c->vma_end;
		} else {
			if (s < c->vma_start)
				s = c->vma_start;
			/* A range over several VMAs (MW_MPROT_SPAN) is judged whole. */
			if (e > c->vma_end && !(c->flags & MW_MPROT_SPAN))
				e = c->vma_end;
		}
	}
	*start = s;
	*end = e;
}

/*
 * Consults and updates the history for a call with result `result`, judged
 * on the protection the kernel applies (c->prot); sets MW_MPROT_WAS_WRITABLE
 * and MW_MPROT_HISTORY_INCOMPLETE in c->flags. Runs for every call, filtered
 * or not.
 */
static __always_inline void mw_wx_track(__u64 pid_tgid, struct mw_mprot_call *c, __s32 result,
					bool syscall)
{
	/* A syscall failing after its first VMA has changed the VMAs before (see above). */
	bool changed =
		result == 0 || (syscall && result != -MW_EINVAL && (c->flags & MW_MPROT_VMA));
	__u32 tgid = pid_tgid >> 32;
	__u64 space = mw_current_space();
	__u64 start, end;

	mw_mprot_range(c, &start, &end);
	if (end <= start || !space)
		return;
	if (c->prot & MW_PROT_EXEC)
		c->flags |= mw_wx_check(space, start, end);
	if (changed && (c->flags & MW_MPROT_VMA) && (c->prev_prot & MW_PROT_WRITE) &&
	    !(c->prot & MW_PROT_WRITE))
		mw_wx_remember(tgid, space, start, end);
}

/* For sched_process_exit: calls in flight go; the history with the last thread. */
static __always_inline void mw_mprotect_exit(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&mw_pending_tp_mprotect, &pid_tgid);
	bpf_map_delete_elem(&mw_pending_kprobe_mprotect, &pid_tgid);
	bpf_map_delete_elem(&mw_pending_mremap, &pid_tgid);
	/* signal->live reached 0 in do_exit before this tracepoint: the group is dead. */
	if (BPF_CORE_READ(task, signal, live.counter) == 0)
		mw_wx_forget_process(pid_tgid >> 32);
}

/* For sched_process_exec: the old address space is gone. */
static __always_inline void mw_mprotect_exec(void)
{
	mw_wx_forget_process(bpf_get_current_pid_tgid() >> 32);
}

/* ---- mremap: the history follows a moved range ---- */

static __always_inline int mw_tp_mremap_enter(struct mw_sys_enter_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 space = mw_current_space();
	struct mw_mremap_call c = {};

	/* Only address spaces with a history have anything to move. */
	if (mw_ignored(pid_tgid) || !bpf_map_lookup_elem(&mw_wx_history_map, &space))
		return 0;
	c.old_addr = ctx->args[0] & MW_PAGE_MASK;
	c.old_len = ctx->args[1];
	c.new_len = ctx->args[2];
	c.flags = ctx->args[3];
	if (bpf_map_update_elem(&mw_pending_mremap, &pid_tgid, &c, BPF_ANY))
		mw_count(MW_COUNTER_MPROTECT_PENDING_MAP_FULL);
	return 0;
}

#define MW_MREMAP_PIECES 4

struct mw_mremap_walk {
	struct mw_wx_history *h;
	__u64 old;
	__u64 old_end;
	__u64 new_addr;
	__u64 new_end;
	__u64 piece_start[MW_MREMAP_PIECES];
	__u64 piece_end[MW_MREMAP_PIECES];
	__u32 pieces;
	__u32 unmapped;
};

static long mw_mremap_step(__u32 i, struct mw_mremap_walk *w)
{
	struct mw_wx_history *h = w->h;
	__u64 s, e, ms, me;
	__u32 n;

	if (i >= MW_WX_RANGES)
		return 1;
	s = h->start[i];
	e = h->end[i];
	if (!e || e <= w->old || w->old_end <= s)
		return 0;
	if (s < w->old)
		s = w->old;
	if (e > w->old_end)
		e = w->old_end;
	ms = w->new_addr + (s - w->old);
	me = w->new_addr + (e - w->old);
	if (me > w->new_end)
		me = w->new_end;
	if (w->unmapped && h->start[i] >= w->old && h->end[i] <= w->old_end) {
		/* Wholly moved: the range now lives at the new address only. */
		h->start[i] = ms;
		h->end[i] = me > ms ? me : 0;
		return 0;
	}
	if (me <= ms)
		return 0;
	n = w->pieces;
	if (n < MW_MREMAP_PIECES) {
		w->piece_start[n & (MW_MREMAP_PIECES - 1)] = ms;
		w->piece_end[n & (MW_MREMAP_PIECES - 1)] = me;
	}
	w->pieces = n + 1;
	return 0;
}

/*
 * The remembered parts of [old, old + old_len) now live at new_addr: a range
 * wholly moved is translated in place; a part of one, or a copy
 * (MREMAP_DONTUNMAP leaves the old range mapped), is added. More than
 * MW_MREMAP_PIECES such parts in one call mark the history lost (incomplete).
 */
static __always_inline int mw_tp_mremap_exit(struct mw_sys_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_mremap_call *c = bpf_map_lookup_elem(&mw_pending_mremap, &pid_tgid);
	struct mw_mremap_walk w = {};
	__u64 space;

	if (!c)
		return 0;
	w.old = c->old_addr;
	w.old_end = w.old + c->old_len;
	w.new_addr = (__u64)ctx->ret;
	w.new_end = w.new_addr + c->new_len;
	w.unmapped = !(c->flags & MW_MREMAP_DONTUNMAP);
	bpf_map_delete_elem(&mw_pending_mremap, &pid_tgid);
	if (mw_is_err_value(w.new_addr) || w.new_addr == w.old)
		return 0; /* failed, or resized in place: nothing moved */
	space = mw_current_space();
	w.h = bpf_map_lookup_elem(&mw_wx_history_map, &space);
	if (!w.h)
		return 0;
	bpf_loop(MW_WX_RANGES, mw_mremap_step, &w, 0);
	if (w.pieces > MW_MREMAP_PIECES)
		w.h->lost = 1;
#pragma unroll
	for (int i = 0; i < MW_MREMAP_PIECES; i++) {
		if (w.piece_end[i] > w.piece_start[i])
			mw_wx_remember(pid_tgid >> 32, space, w.piece_start[i], w.piece_end[i]);
	}
	return 0;
}

/* ---- syscall_tracepoint: the VMA at `start`, under the mmap lock ---- */

struct mw_mprot_lookup {
	__u64 addr;
	struct mw_mprot_call *call;
	struct mw_file *info; /* exit only: where the file facts go */
	char *buf;
	char *out;
	long err;
	__u64 deadline;
	__u64 vm_flags; /* entry: the VMA's flags */
	__u32 exit;   /* 0: entry (flags and range), 1: exit (file facts) */
	__u32 source; /* exit: MW_FILE_SOURCE_VMA or _VMA_MISMATCH */
};

static long mw_mprot_vma_cb(struct task_struct *task, struct vm_area_struct *vma,
			    struct mw_mprot_lookup *l)
{
	struct mw_mprot_call *c = l->call;
	struct file *file = BPF_CORE_READ(vma, vm_file);

	if (!l->exit) {
		c->vma_start = BPF_CORE_READ(vma, vm_start);
		c->vma_end = BPF_CORE_READ(vma, vm_end);
		l->vm_flags = BPF_CORE_READ(vma, vm_flags);
		c->prev_prot = l->vm_flags & MW_VM_PROT_BITS;
		c->file = (__u64)file; /* a number to compare at exit, never dereferenced */
		c->flags |= MW_MPROT_VMA;
		return 0;
	}
	if (!file || (__u64)file != c->file) {
		l->source = MW_FILE_SOURCE_VMA_MISMATCH;
		return 0;
	}
	mw_file_info(file, l->info, l->buf, l->out);
	l->source = MW_FILE_SOURCE_VMA;
	return 0;
}

static long mw_mprot_try(__u32 index, struct mw_mprot_lookup *l)
{
	l->err = bpf_find_vma(bpf_get_current_task_btf(), l->addr, mw_mprot_vma_cb, l, 0);
	if (l->err != -MW_EBUSY)
		return 1;
	return bpf_ktime_get_ns() > l->deadline;
}

/* Runs the lookup; returns bpf_find_vma's last result. */
static __always_inline long mw_mprot_lookup_run(struct mw_mprot_lookup *l)
{
	l->err = -MW_EBUSY;
	l->deadline = bpf_ktime_get_ns() + MW_VMA_WAIT_NS;
	bpf_loop(MW_VMA_MAX_TRIES, mw_mprot_try, l, 0);
	return l->err;
}

/* Why no VMA was read (entry or exit), counted like the mmap lookups. */
static __always_inline __u16 mw_mprot_lookup_failed(long err, bool count_missing)
{
	if (err == -MW_EBUSY) {
		mw_count(MW_COUNTER_VMA_BUSY);
		return MW_FILE_SOURCE_VMA_BUSY;
	}
	if (err == -MW_ENOENT) {
		if (count_missing)
			mw_count(MW_COUNTER_VMA_MISSING);
		return MW_FILE_SOURCE_VMA_MISSING;
	}
	mw_count(MW_COUNTER_VMA_LOOKUP_FAILED);
	return MW_FILE_SOURCE_LOOKUP_FAILED;
}

#define MW_MPROT_SPAN_VMAS 8

/* The VMAs after the first one of an mprotect range (syscall_tracepoint, entry). */
struct mw_mprot_span {
	__u64 addr;  /* next address to look up */
	__u64 end;   /* end of the range */
	__u64 first_file;
	__u64 writable; /* PROT_WRITE if any was writable */
	__u32 all_exec;
	__u16 flags; /* MW_MPROT_SPAN* */
	__u16 done;
};

static long mw_mprot_span_cb(struct task_struct *task, struct vm_area_struct *vma,
			     struct mw_mprot_span *w)
{
	__u64 start = BPF_CORE_READ(vma, vm_start);
	__u64 flags = BPF_CORE_READ(vma, vm_flags);
	__u64 file = (__u64)BPF_CORE_READ(vma, vm_file);

	if (start > w->addr) {
		w->done = 1; /* a hole: the call stops there (ENOMEM) */
		return 0;
	}
	w->flags |= MW_MPROT_SPAN;
	w->writable |= flags & MW_PROT_WRITE;
	if (!(flags & MW_VM_EXEC))
		w->all_exec = 0;
	if (!file)
		w->flags |= MW_MPROT_SPAN_ANON;
	else if (file != w->first_file)
		w->flags |= MW_MPROT_SPAN_UNCHECKED; /* its file's facts are not read */
	w->addr = BPF_CORE_READ(vma, vm_end);
	return 0;
}

static long mw_mprot_span_step(__u32 index, struct mw_mprot_span *w)
{
	long err;

	if (w->done || w->addr >= w->end)
		return 1;
	err = bpf_find_vma(bpf_get_current_task_btf(), w->addr, mw_mprot_span_cb, w, 0);
	if (err == -MW_ENOENT)
		return 1; /* nothing at or above: a hole */
	if (err) {
		w->flags |= MW_MPROT_SPAN_UNCHECKED;
		return 1;
	}
	return 0;
}

/* Folds the VMAs after the first into c->prev_prot and c->flags. */
static __always_inline void mw_mprot_span(struct mw_mprot_call *c)
{
	struct mw_mprot_span w = {
		.addr = c->vma_end,
		.end = c->start + c->len,
		.first_file = c->file,
		.all_exec = 1,
	};

	if (w.addr >= w.end)
		return;
	bpf_loop(MW_MPROT_SPAN_VMAS, mw_mprot_span_step, &w, 0);
	if (!w.done && w.addr < w.end && (w.flags & MW_MPROT_SPAN))
		w.flags |= MW_MPROT_SPAN_UNCHECKED; /* more VMAs than looked at */
	if (!(w.flags & MW_MPROT_SPAN))
		return;
	c->flags |= w.flags;
	c->prev_prot |= w.writable;
	if (!w.all_exec)
		c->prev_prot &= ~MW_PROT_EXEC;
}

/*
 * Entry: the previous protection and range of the VMA at `start`, and the
 * protection the kernel will apply: do_mprotect_pkey adds PROT_EXEC to a
 * PROT_READ request under READ_IMPLIES_EXEC on each VMA that may be
 * executable (VM_MAYEXEC: not from a noexec mount). When the VMA cannot be
 * read, the kernel's rule is assumed to apply (fail closed).
 */
static __always_inline void mw_mprot_vma_enter(struct mw_mprot_call *c)
{
	struct mw_mprot_lookup l = { .addr = c->start, .call = c };
	long err = mw_mprot_lookup_run(&l);

	if ((c->reqprot & MW_PROT_READ) && mw_read_implies_exec() &&
	    (err || (l.vm_flags & MW_VM_MAYEXEC)))
		c->prot |= MW_PROT_EXEC;
	if (!err)
		mw_mprot_span(c);

	/* Counted when the record is built (after the task filters), not here. */
	if (err == -MW_EBUSY)
		c->file_source = MW_FILE_SOURCE_VMA_BUSY;
	else if (err == -MW_ENOENT)
		c->file_source = MW_FILE_SOURCE_VMA_MISSING;
	else if (err)
		c->file_source = MW_FILE_SOURCE_LOOKUP_FAILED;
}

/* Exit: the file of the VMA at `start`, if it is still the one seen at entry. */
static __always_inline __u16 mw_mprot_vma_file(struct mw_mprot_call *c, struct mw_file *info,
					       char *buf, char *out)
{
	struct mw_mprot_lookup l = {
		.addr = c->start, .call = c, .info = info, .buf = buf, .out = out, .exit = 1,
		.source = MW_FILE_SOURCE_LOOKUP_FAILED,
	};
	long err = mw_mprot_lookup_run(&l);
	__u16 source = l.source;

	if (err)
		source = mw_mprot_lookup_failed(err, true);
	else if (source == MW_FILE_SOURCE_VMA_MISMATCH)
		mw_count(MW_COUNTER_VMA_MISMATCH);
	if (source != MW_FILE_SOURCE_VMA)
		__builtin_memset(info, 0, sizeof(*info));
	return source;
}

/* ---- the record ---- */

/*
 * Fills the file facts of the record. Kernel backends: `vma` is the hook's
 * argument (the VMA and its file stay valid while the hook runs, under the
 * mmap write lock). syscall_tracepoint: `vma` is NULL and the facts come from
 * a lookup (mw_mprot_vma_file) done by the caller.
 */
static __always_inline void mw_emit_mprotect(__u16 backend, __u64 pid_tgid, struct mw_mprot_call *c,
					     __s32 result, struct vm_area_struct *vma)
{
	__u32 zero = 0;
	struct mw_mprot_scratch *s;
	struct mw_security_file_mprotect *ev;
	struct file *file = NULL;

	mw_wx_track(pid_tgid, c, result, backend == MW_BACKEND_SYSCALL_TRACEPOINT);
	if (vma)
		file = BPF_CORE_READ(vma, vm_file);
	if (!mw_filter_task(pid_tgid, c->prot,
			    vma ? file != NULL : c->file != 0))
		return;
	s = bpf_map_lookup_elem(&mw_mprot_scratch_map, &zero);
	if (!s)
		return;
	ev = &s->ev;
	mw_fill_header(&ev->hdr, MW_EVENT_SECURITY_FILE_MPROTECT, backend, pid_tgid);
	ev->start = c->start;
	ev->len = c->len;
	ev->reqprot = c->reqprot;
	ev->prot = c->prot;
	ev->vma_start = c->vma_start;
	ev->vma_end = c->vma_end;
	ev->prev_prot = c->prev_prot;
	ev->pkey = c->pkey;
	ev->result = result;
	ev->has_result = 1;
	ev->call_flags = c->flags;
	ev->enforced = c->enforced;
	ev->action = c->action;
	ev->_pad0 = 0;
	if (vma) {
		mw_file_info(file, &ev->file, s->path_buf, ev->path);
		ev->file_source = file ? MW_FILE_SOURCE_ARGUMENT : MW_FILE_SOURCE_NONE;
	} else {
		ev->file_source = MW_FILE_SOURCE_NONE;
		__builtin_memset(&ev->file, 0, sizeof(ev->file));
		if (c->file)
			ev->file_source = mw_mprot_vma_file(c, &ev->file, s->path_buf, ev->path);
		else if (!(c->flags & MW_MPROT_VMA)) {
			/* Why the VMA is unknown; nothing mapped at start (ENOMEM) is not counted. */
			ev->file_source = c->file_source;
			if (c->file_source == MW_FILE_SOURCE_VMA_BUSY)
				mw_count(MW_COUNTER_VMA_BUSY);
			else if (c->file_source == MW_FILE_SOURCE_LOOKUP_FAILED)
				mw_count(MW_COUNTER_VMA_LOOKUP_FAILED);
		}
	}
	if (!mw_filter_path(ev->path, ev->file.path_len, ev->file.flags & MW_FILE_PRESENT) ||
	    !mw_rate_allows(pid_tgid, c->prot & MW_PROT_EXEC))
		return;
	mw_output(ev, &ev->hdr, __builtin_offsetof(struct mw_security_file_mprotect, path),
		  ev->file.path_len, MW_COUNTER_MPROTECT_SENT, MW_COUNTER_MPROTECT_RINGBUF_FULL,
		  c->prot & MW_PROT_EXEC);
}

/* ---- backend syscall_tracepoint ---- */

static __always_inline int mw_tp_mprotect_enter(struct mw_sys_enter_ctx *ctx, bool pkey_call)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_mprot_call c = {};

	if (mw_ignored(pid_tgid))
		return 0;
	c.start = ctx->args[0];
	c.len = ctx->args[1];
	c.reqprot = ctx->args[2];
	c.prot = c.reqprot;
	c.pkey = pkey_call ? (__s32)ctx->args[3] : -1;
	c.flags = MW_MPROT_RANGE | (pkey_call ? MW_MPROT_PKEY_CALL : 0);
	mw_mprot_vma_enter(&c);
	if (bpf_map_update_elem(&mw_pending_tp_mprotect, &pid_tgid, &c, BPF_ANY))
		mw_count(MW_COUNTER_MPROTECT_PENDING_MAP_FULL);
	return 0;
}

static __always_inline int mw_tp_mprotect_exit(struct mw_sys_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_mprot_call *c;

	if (mw_ignored(pid_tgid))
		return 0;
	c = bpf_map_lookup_elem(&mw_pending_tp_mprotect, &pid_tgid);
	if (!c)
		return 0;
	mw_emit_mprotect(MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid, c, (__s32)ctx->ret, NULL);
	bpf_map_delete_elem(&mw_pending_tp_mprotect, &pid_tgid);
	return 0;
}

/* ---- kernel backends ---- */

/* The syscall's own arguments (range, pkey), from the task's saved registers. */
static __always_inline void mw_mprot_syscall_args(struct mw_mprot_call *c)
{
	struct pt_regs *uregs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	struct pt_regs regs;

	c->pkey = -1;
	if (!uregs || bpf_probe_read_kernel(&regs, sizeof(regs), uregs))
		return;
	if (regs.orig_ax != MW_NR_MPROTECT && regs.orig_ax != MW_NR_PKEY_MPROTECT)
		return; /* a compat call or another caller: the VMA's range stands */
	c->start = regs.di;
	c->len = regs.si;
	c->flags |= MW_MPROT_RANGE;
	if (regs.orig_ax == MW_NR_PKEY_MPROTECT) {
		c->pkey = (__s32)regs.r10;
		c->flags |= MW_MPROT_PKEY_CALL;
	}
}

/* Fills `c` from the hook's arguments; `vma` is valid while the hook runs. */
static __always_inline void mw_mprot_hook_call(struct mw_mprot_call *c, struct vm_area_struct *vma,
					       __u64 reqprot, __u64 prot)
{
	c->reqprot = reqprot;
	c->prot = prot;
	c->vma_start = BPF_CORE_READ(vma, vm_start);
	c->vma_end = BPF_CORE_READ(vma, vm_end);
	c->prev_prot = BPF_CORE_READ(vma, vm_flags) & MW_VM_PROT_BITS;
	c->flags |= MW_MPROT_VMA;
	mw_mprot_syscall_args(c);
}

static __always_inline int mw_lsm_file_mprotect(__u64 *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_mprot_call c = {};
	struct vm_area_struct *vma;
	__u64 vma_addr = 0, start, end;
	__u16 history = 0;
	__u32 reasons;
	int ret = (int)ctx[3];

	if (mw_ignored(pid_tgid))
		return ret;
	bpf_probe_read_kernel(&vma_addr, sizeof(vma_addr), &ctx[0]);
	if (!vma_addr)
		return ret;
	vma = (struct vm_area_struct *)vma_addr;
	mw_mprot_hook_call(&c, vma, ctx[1], ctx[2]);
	/* Judged before it takes effect, as if it succeeds (enforce.h). */
	if (mw_enforcing()) {
		mw_mprot_range(&c, &start, &end);
		if (end > start && (c.prot & MW_PROT_EXEC))
			history = mw_wx_check(mw_current_space(), start, end);
		reasons = mw_reasons_mprotect(BPF_CORE_READ(vma, vm_file), c.prot, c.prev_prot,
					      history);
		c.action = mw_enforce_decide(pid_tgid, reasons, &c.enforced);
		ret = mw_enforce_verdict(ret, c.action);
	}
	mw_emit_mprotect(MW_BACKEND_LSM, pid_tgid, &c, ret, vma);
	return ret; /* observed, or refused by enforcement */
}

static __always_inline int mw_fexit_security_file_mprotect(__u64 *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_mprot_call c = {};
	__u64 vma = 0, reqprot = 0, prot = 0, ret = 0;

	if (mw_ignored(pid_tgid))
		return 0;
	bpf_get_func_arg(ctx, 0, &vma);
	bpf_get_func_arg(ctx, 1, &reqprot);
	bpf_get_func_arg(ctx, 2, &prot);
	bpf_get_func_ret(ctx, &ret);
	if (!vma)
		return 0;
	mw_mprot_hook_call(&c, (struct vm_area_struct *)vma, reqprot, prot);
	mw_emit_mprotect(MW_BACKEND_FEXIT, pid_tgid, &c, (__s32)ret, (struct vm_area_struct *)vma);
	return 0;
}

static __always_inline int mw_kprobe_security_file_mprotect(struct pt_regs *regs)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_mprot_call c = {};

	if (mw_ignored(pid_tgid))
		return 0;
	c.vma = MW_REGS_ARG(regs, 0);
	if (!c.vma)
		return 0;
	mw_mprot_hook_call(&c, (struct vm_area_struct *)c.vma, MW_REGS_ARG(regs, 1),
			   MW_REGS_ARG(regs, 2));
	if (bpf_map_update_elem(&mw_pending_kprobe_mprotect, &pid_tgid, &c, BPF_ANY))
		mw_count(MW_COUNTER_MPROTECT_PENDING_MAP_FULL);
	return 0;
}

static __always_inline int mw_kretprobe_security_file_mprotect(struct pt_regs *regs)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_mprot_call *c;

	if (mw_ignored(pid_tgid))
		return 0;
	c = bpf_map_lookup_elem(&mw_pending_kprobe_mprotect, &pid_tgid);
	if (!c)
		return 0;
	/* Still inside the caller's mmap write lock: the VMA is the one of the entry. */
	mw_emit_mprotect(MW_BACKEND_KPROBE, pid_tgid, c, (__s32)MW_REGS_RET(regs),
			 (struct vm_area_struct *)c->vma);
	bpf_map_delete_elem(&mw_pending_kprobe_mprotect, &pid_tgid);
	return 0;
}

#endif /* MAPWATCH_MPROTECT_H */
