/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The W->X history: ranges of an address space that were writable and were
 * made non-writable, so that a later mprotect adding PROT_EXEC to any part
 * of them is flagged (MW_MPROT_WAS_WRITABLE) although the memory is not
 * writable any more (the RW -> R -> RX evasion). Kept in the kernel so every
 * backend and enforcement share it.
 *
 * Keyed by the address space, not the process: x86's mm->context.ctx_id, a
 * number no other address space ever had (a stale entry can never match a
 * later process), shared by threads and CLONE_VM children (vfork,
 * posix_spawn). A fork copies the parent's history to the child's new
 * address space (its memory is a copy, written code included).
 *
 * Two pools of MW_WX_RANGES ranges, one for anonymous memory and one for
 * file mappings: a range made executable is checked against the pool of its
 * own kind (munmap + mmap of the other kind at the same address brings other
 * contents), so the dozens of RELRO ranges of a program's libraries never
 * crowd out, or merge over, its anonymous memory. Ranges that overlap are
 * merged (ranges that only touch are not: mremap of one moves it whole).
 * When a pool is full, the new range is merged with the nearest
 * one, the gap between them included: the merged range is coarse, and a
 * PROT_EXEC over it is both MW_MPROT_WAS_WRITABLE (it may be) and
 * MW_MPROT_HISTORY_INCOMPLETE (it may not), counted
 * MW_COUNTER_WX_HISTORY_EVICTED.
 *
 * Lifetime: the processes using an address space are counted
 * (mw_wx_space_map, registered at fork for CLONE_VM children and their
 * parent, and whenever a process touches the history); the history goes
 * when the last one dies (its last thread) or execs. No pointer into an mm
 * is kept: the exit tracepoint runs before or after exit_mm depending on the
 * kernel version. An address space that finds no room (MW_WX_SPACES) is
 * counted MW_COUNTER_WX_HISTORY_FULL and marked untracked: each PROT_EXEC it
 * adds is MW_MPROT_HISTORY_INCOMPLETE. A registration that cannot be stored
 * pins the space (kept until the map is cleared, counted full): a history is
 * never dropped while it may be in use.
 */
#ifndef MAPWATCH_WX_HISTORY_H
#define MAPWATCH_WX_HISTORY_H

#include "common.h"

#define MW_WX_RANGES 32
/* Address spaces with a history: 4096 x 1 KiB, preallocated (tracing programs on kernels
 * before 6.1, and PREEMPT_RT kernels, may only use preallocated hash maps). */
#define MW_WX_SPACES 4096
#define MW_WX_POOL_ANON 0
#define MW_WX_POOL_FILE 1

struct mw_wx_pool {
	__u64 start[MW_WX_RANGES];
	__u64 end[MW_WX_RANGES]; /* 0: a free slot */
	__u32 coarse;            /* bit i: range i was merged with another to make room */
	__u32 _pad0;
};

struct mw_wx_history {
	struct mw_wx_pool pool[2]; /* MW_WX_POOL_ANON, MW_WX_POOL_FILE */
	__u32 lost; /* a range could not be followed (mremap): every judgement is incomplete */
	__u32 _pad0;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_WX_SPACES);
	__type(key, __u64); /* mm->context.ctx_id */
	__type(value, struct mw_wx_history);
} mw_wx_history_map SEC(".maps");

/* Who uses an address space, and whether it is tracked at all. */
struct mw_wx_space {
	__u32 users;     /* processes registered in mw_wx_user_map */
	__u32 untracked; /* no room for its history: judged incomplete */
	__u32 pinned;    /* a user could not be registered: never forgotten */
	__u32 _pad0;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_WX_SPACES * 2);
	__type(key, __u64);
	__type(value, struct mw_wx_space);
} mw_wx_space_map SEC(".maps");

/* The address space each process is registered with (at its death its mm is gone). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_WX_SPACES * 2);
	__type(key, __u32); /* tgid */
	__type(value, __u64);
} mw_wx_user_map SEC(".maps");

/* An empty history, never written: what a new one starts as (too large for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mw_wx_history);
} mw_wx_empty_map SEC(".maps");

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

/* The space's entry, made when missing; NULL only when the map is full (counted). */
static __always_inline struct mw_wx_space *mw_wx_space(__u64 space)
{
	struct mw_wx_space *s = bpf_map_lookup_elem(&mw_wx_space_map, &space);
	struct mw_wx_space fresh = {};

	if (s)
		return s;
	/* EEXIST: another CPU made it first; either way look it up again. */
	bpf_map_update_elem(&mw_wx_space_map, &space, &fresh, BPF_NOEXIST);
	s = bpf_map_lookup_elem(&mw_wx_space_map, &space);
	if (!s)
		mw_count(MW_COUNTER_WX_HISTORY_FULL);
	return s;
}

/*
 * Process `tgid` uses `space` (idempotent). A process is registered with one
 * space at a time: its exec unregisters it first (a missed one leaves the old
 * space one user too many: kept longer, never dropped early).
 */
static __always_inline void mw_wx_register(__u32 tgid, __u64 space)
{
	__u64 *known = bpf_map_lookup_elem(&mw_wx_user_map, &tgid);
	struct mw_wx_space *s;

	if (known && *known == space)
		return;
	s = mw_wx_space(space);
	if (!s)
		return;
	if (bpf_map_update_elem(&mw_wx_user_map, &tgid, &space, BPF_ANY)) {
		s->pinned = 1; /* cannot count this user: never forget the space */
		mw_count(MW_COUNTER_WX_HISTORY_FULL);
		return;
	}
	__sync_fetch_and_add(&s->users, 1);
}

/* Process `tgid` died or exec'd: its space loses a user; the last one takes the history along. */
static __always_inline void mw_wx_unregister(__u32 tgid)
{
	__u64 *used = bpf_map_lookup_elem(&mw_wx_user_map, &tgid);
	struct mw_wx_space *s;
	__u64 space;

	if (!used)
		return;
	space = *used;
	bpf_map_delete_elem(&mw_wx_user_map, &tgid);
	s = bpf_map_lookup_elem(&mw_wx_space_map, &space);
	if (!s || s->pinned)
		return;
	__sync_fetch_and_add(&s->users, -1);
	/* Two last users racing both delete: harmless. */
	if (s->users > 0)
		return;
	bpf_map_delete_elem(&mw_wx_history_map, &space);
	bpf_map_delete_elem(&mw_wx_space_map, &space);
}

/* A walk over one pool (bpf_loop: the step is verified once). */
struct mw_wx_walk {
	struct mw_wx_pool *p;
	__u64 start;
	__u64 end;
	__u64 best_gap; /* remember: distance to the nearest range */
	__s32 free_slot;
	__s32 nearest;
	__u32 merged; /* remember: the range joined one that overlaps it */
	__u16 flags;  /* check: MW_MPROT_WAS_WRITABLE, MW_MPROT_HISTORY_INCOMPLETE */
	__u16 _pad0;
};

static long mw_wx_check_step(__u32 i, struct mw_wx_walk *w)
{
	struct mw_wx_pool *p = w->p;

	if (i >= MW_WX_RANGES)
		return 1;
	if (!p->end[i] || p->start[i] >= w->end || w->start >= p->end[i])
		return 0;
	w->flags |= MW_MPROT_WAS_WRITABLE;
	if (p->coarse & (1U << i))
		w->flags |= MW_MPROT_HISTORY_INCOMPLETE;
	return 0;
}

/*
 * What the history of `space` knows of [start, end) in the pools of `pools`
 * (bit per MW_WX_POOL_*): MW_MPROT_WAS_WRITABLE, MW_MPROT_HISTORY_INCOMPLETE.
 */
static __always_inline __u16 mw_wx_check(__u64 space, __u64 start, __u64 end, __u32 pools)
{
	struct mw_wx_history *h = bpf_map_lookup_elem(&mw_wx_history_map, &space);
	struct mw_wx_walk w = { .start = start, .end = end };
	struct mw_wx_space *s;

	if (!h) {
		s = bpf_map_lookup_elem(&mw_wx_space_map, &space);
		return s && s->untracked ? MW_MPROT_HISTORY_INCOMPLETE : 0;
	}
	/* A range that could not be followed may be anywhere: writable, as far as we know. */
	if (h->lost)
		w.flags |= MW_MPROT_HISTORY_INCOMPLETE | MW_MPROT_WAS_WRITABLE;
	if (pools & (1U << MW_WX_POOL_ANON)) {
		w.p = &h->pool[MW_WX_POOL_ANON];
		bpf_loop(MW_WX_RANGES, mw_wx_check_step, &w, 0);
	}
	if (pools & (1U << MW_WX_POOL_FILE)) {
		w.p = &h->pool[MW_WX_POOL_FILE];
		bpf_loop(MW_WX_RANGES, mw_wx_check_step, &w, 0);
	}
	return w.flags;
}

static long mw_wx_remember_step(__u32 i, struct mw_wx_walk *w)
{
	struct mw_wx_pool *p = w->p;
	__u64 s, e, gap;

	if (i >= MW_WX_RANGES)
		return 1;
	s = p->start[i];
	e = p->end[i];
	if (!e) {
		if (w->free_slot < 0)
			w->free_slot = i;
		return 0;
	}
	if (s < w->end && w->start < e) {
		/*
		 * Overlaps: one range for both. Ranges that only touch stay apart,
		 * so that mremap of one of them moves it whole.
		 */
		if (w->start < s)
			p->start[i] = w->start;
		if (w->end > e)
			p->end[i] = w->end;
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

/* Adds [start, end) to pool `pool` of `h`. */
static __always_inline void mw_wx_add(struct mw_wx_history *h, __u32 pool, __u64 start, __u64 end)
{
	struct mw_wx_walk w = {
		.start = start, .end = end, .best_gap = ~0ULL, .free_slot = -1,
	};
	struct mw_wx_pool *p = &h->pool[pool & 1];
	__u32 slot;

	w.p = p;
	bpf_loop(MW_WX_RANGES, mw_wx_remember_step, &w, 0);
	if (w.merged)
		return;
	if (w.free_slot >= 0) {
		/*
		 * Two threads of one process remembering at the same instant may
		 * pick the same slot (no compare-and-swap on the BPF ISA we build
		 * for): one range is lost. The kernel backends hold the mmap lock.
		 */
		slot = w.free_slot & (MW_WX_RANGES - 1);
		p->start[slot] = start;
		p->end[slot] = end;
		return;
	}
	/* No room: merged with the nearest range, gap included (coarse). */
	slot = w.nearest & (MW_WX_RANGES - 1);
	if (p->start[slot] > start)
		p->start[slot] = start;
	if (p->end[slot] < end)
		p->end[slot] = end;
	p->coarse |= 1U << slot;
	mw_count(MW_COUNTER_WX_HISTORY_EVICTED);
}

/* The history of `space`, made when missing; NULL when there is no room (marked untracked). */
static __always_inline struct mw_wx_history *mw_wx_history(__u64 space)
{
	__u32 zero = 0;
	struct mw_wx_history *h = bpf_map_lookup_elem(&mw_wx_history_map, &space);
	struct mw_wx_history *empty;
	struct mw_wx_space *s;

	if (h)
		return h;
	empty = bpf_map_lookup_elem(&mw_wx_empty_map, &zero);
	if (!empty)
		return NULL;
	/* EEXIST: another CPU made it first; either way look it up again. */
	bpf_map_update_elem(&mw_wx_history_map, &space, empty, BPF_NOEXIST);
	h = bpf_map_lookup_elem(&mw_wx_history_map, &space);
	if (h)
		return h;
	mw_count(MW_COUNTER_WX_HISTORY_FULL);
	s = mw_wx_space(space);
	if (s)
		s->untracked = 1;
	return NULL;
}

/* Remembers that [start, end) of `space`, in pool `pool`, was writable until now. */
static __always_inline void mw_wx_remember(__u32 tgid, __u64 space, __u32 pool, __u64 start,
					   __u64 end)
{
	struct mw_wx_history *h;

	mw_wx_register(tgid, space);
	h = mw_wx_history(space);
	if (h)
		mw_wx_add(h, pool, start, end);
}

/*
 * sched_process_fork: a child with its own address space starts with a copy
 * of its parent's history; a CLONE_VM child and its parent are both
 * registered users of the one they share; threads need nothing.
 */
static __always_inline int mw_wx_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid = BPF_CORE_READ(parent, tgid);
	__u32 child_tgid = BPF_CORE_READ(child, tgid);
	__u64 parent_space, child_space;
	struct mw_wx_history *h;
	struct mw_wx_space *s;

	if (child_tgid == parent_tgid)
		return 0; /* a thread */
	parent_space = mw_space_of(parent);
	child_space = mw_space_of(child);
	if (!parent_space || !child_space)
		return 0;
	if (child_space == parent_space) {
		mw_wx_register(parent_tgid, parent_space);
		mw_wx_register(child_tgid, child_space);
		return 0;
	}
	h = bpf_map_lookup_elem(&mw_wx_history_map, &parent_space);
	if (h) {
		mw_wx_register(child_tgid, child_space);
		if (bpf_map_update_elem(&mw_wx_history_map, &child_space, h, BPF_NOEXIST)) {
			mw_count(MW_COUNTER_WX_HISTORY_FULL);
			s = mw_wx_space(child_space);
			if (s)
				s->untracked = 1;
		}
		return 0;
	}
	s = bpf_map_lookup_elem(&mw_wx_space_map, &parent_space);
	if (s && s->untracked) {
		mw_wx_register(child_tgid, child_space);
		s = mw_wx_space(child_space);
		if (s)
			s->untracked = 1;
	}
	return 0;
}

/* sched_process_exit: the process's registration goes with its last thread. */
static __always_inline void mw_wx_exit(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	/* signal->live reached 0 in do_exit before this tracepoint: the group is dead. */
	if (BPF_CORE_READ(task, signal, live.counter) == 0)
		mw_wx_unregister(bpf_get_current_pid_tgid() >> 32);
}

/* sched_process_exec: the old address space is gone from the process. */
static __always_inline void mw_wx_exec(void)
{
	mw_wx_unregister(bpf_get_current_pid_tgid() >> 32);
}

/* ---- mremap: the history follows a moved range ---- */

struct mw_mremap_walk {
	struct mw_wx_pool *p;
	__u64 old;
	__u64 old_end;
	__u64 new_addr;
	__u64 new_end;
	__u32 pieces; /* remembered parts that cannot be translated in place */
	__u32 unmapped;
};

static long mw_mremap_step(__u32 i, struct mw_mremap_walk *w)
{
	struct mw_wx_pool *p = w->p;
	__u64 s, e, ms, me;

	if (i >= MW_WX_RANGES)
		return 1;
	s = p->start[i];
	e = p->end[i];
	if (!e || e <= w->old || w->old_end <= s)
		return 0;
	if (!w->unmapped || s < w->old || e > w->old_end) {
		w->pieces++; /* a copy (MREMAP_DONTUNMAP), or part of a range */
		return 0;
	}
	/* Wholly moved: the range now lives at the new address only. */
	ms = w->new_addr + (s - w->old);
	me = w->new_addr + (e - w->old);
	if (me > w->new_end)
		me = w->new_end;
	p->start[i] = ms;
	p->end[i] = me > ms ? me : 0;
	return 0;
}

/*
 * The remembered ranges inside [old, old_end) of pool `pool` now live at
 * [new_addr, new_end), translated in place. A range only partly moved, or
 * copied (MREMAP_DONTUNMAP leaves the old range mapped), cannot be kept
 * exactly: the history is marked lost (every later judgement incomplete).
 */
static __always_inline void mw_wx_move(struct mw_wx_history *h, __u32 pool, __u64 old,
				       __u64 old_end, __u64 new_addr, __u64 new_end, bool unmapped)
{
	struct mw_mremap_walk w = {
		.old = old, .old_end = old_end, .new_addr = new_addr, .new_end = new_end,
		.unmapped = unmapped,
	};

	w.p = &h->pool[pool & 1];
	bpf_loop(MW_WX_RANGES, mw_mremap_step, &w, 0);
	if (w.pieces)
		h->lost = 1;
}

#endif /* MAPWATCH_WX_HISTORY_H */
