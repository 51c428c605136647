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
 * W->X history (wx_history.h): consulted for every call adding PROT_EXEC
 * and taught by every call that drops PROT_WRITE from a writable VMA, before
 * filters and rate limit (a filtered record still teaches it). The kernel
 * backends do both in the hook, under the mmap write lock; syscall_tracepoint
 * remembers at entry (the range is writable now, whatever the call's
 * outcome: another thread's RX cannot slip in before the exit), and judges
 * the protection the kernel applies.
 */
#ifndef MAPWATCH_MPROTECT_H
#define MAPWATCH_MPROTECT_H

#include "emit.h"
#include "enforce.h"
#include "wx_history.h"

#define MW_VM_PROT_BITS 0xfULL /* VM_READ | VM_WRITE | VM_EXEC | VM_SHARED == PROT_* values */
#define MW_PAGE_MASK (~((1ULL << MW_PAGE_SHIFT) - 1))
/* x86-64 syscall numbers, as orig_ax holds them */
#define MW_NR_MPROTECT 10
#define MW_NR_PKEY_MPROTECT 329


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

/*
 * The call being judged by a kernel backend's hook, kept in a map value, not
 * on the stack: the verifier does not tell states apart by a map value's
 * contents, so the history's and enforcement's outcomes do not multiply the
 * paths it walks through the rest of the program (on 6.1 the lsm program
 * took a minute to verify with the call on the stack).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mw_mprot_call);
} mw_mprot_call_scratch SEC(".maps");

static __always_inline struct mw_mprot_call *mw_mprot_call_slot(void)
{
	__u32 zero = 0;
	struct mw_mprot_call *c = bpf_map_lookup_elem(&mw_mprot_call_scratch, &zero);

	if (!c) {
		mw_count(MW_COUNTER_SCRATCH_MISSING);
		return NULL;
	}
	__builtin_memset(c, 0, sizeof(*c));
	return c;
}

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

/* ---- W->X history (wx_history.h) ---- */

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

/* The history's pools a range of this call is judged in (wx_history.h). */
static __always_inline __u32 mw_mprot_pools(struct mw_mprot_call *c, bool has_file)
{
	__u32 pools = has_file ? 1U << MW_WX_POOL_FILE : 1U << MW_WX_POOL_ANON;

	if (c->flags & MW_MPROT_SPAN)
		pools = (1U << MW_WX_POOL_ANON) | (1U << MW_WX_POOL_FILE);
	return pools;
}

/*
 * Teaches the history: [range] was writable and loses PROT_WRITE. Global,
 * like mw_wx_judge: the history's walks are verified once per program.
 */
__noinline int mw_wx_learn(__u64 pid_tgid, struct mw_mprot_call *c, __u32 has_file)
{
	__u64 space = mw_current_space();
	__u64 start, end;

	if (!c)
		return 0;
	if (!space || !(c->flags & MW_MPROT_VMA) || !(c->prev_prot & MW_PROT_WRITE) ||
	    (c->prot & MW_PROT_WRITE))
		return 0;
	mw_mprot_range(c, &start, &end);
	if (end <= start)
		return 0;
	/* A span with anonymous memory in it is judged in both pools: kept as anonymous. */
	mw_wx_remember(pid_tgid >> 32, space,
		       has_file && !(c->flags & MW_MPROT_SPAN_ANON) ? MW_WX_POOL_FILE
								      : MW_WX_POOL_ANON,
		       start, end);
	return 0;
}

/* What the history says of this call's range (MW_MPROT_* flags), when it asks for PROT_EXEC. */
__noinline int mw_wx_judge(struct mw_mprot_call *c, __u32 has_file)
{
	__u64 space = mw_current_space();
	__u64 start, end;

	if (!c || !space || !(c->prot & MW_PROT_EXEC))
		return 0;
	mw_mprot_range(c, &start, &end);
	if (end <= start)
		return 0;
	return mw_wx_check(space, start, end, mw_mprot_pools(c, has_file));
}

/* For sched_process_exit: calls in flight go; the history with the last user. */
static __always_inline void mw_mprotect_exit(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&mw_pending_tp_mprotect, &pid_tgid);
	bpf_map_delete_elem(&mw_pending_kprobe_mprotect, &pid_tgid);
	bpf_map_delete_elem(&mw_pending_mremap, &pid_tgid);
	mw_wx_exit();
}

/* For sched_process_exec: the old address space is gone. */
static __always_inline void mw_mprotect_exec(void)
{
	mw_wx_exec();
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
	if (bpf_map_update_elem(&mw_pending_mremap, &pid_tgid, &c, BPF_ANY)) {
		struct mw_wx_history *h = bpf_map_lookup_elem(&mw_wx_history_map, &space);

		mw_count(MW_COUNTER_MPROTECT_PENDING_MAP_FULL);
		if (h)
			h->lost = 1; /* the move cannot be followed */
	}
	return 0;
}

/* The history's ranges in [old, old + old_len) now live at the address mremap returned. */
static __always_inline int mw_tp_mremap_exit(struct mw_sys_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_mremap_call *c = bpf_map_lookup_elem(&mw_pending_mremap, &pid_tgid);
	struct mw_wx_history *h;
	__u64 old, old_end, new_addr, new_end, space;
	bool unmapped;

	if (!c)
		return 0;
	old = c->old_addr;
	old_end = old + c->old_len;
	new_addr = (__u64)ctx->ret;
	new_end = new_addr + c->new_len;
	unmapped = !(c->flags & MW_MREMAP_DONTUNMAP);
	bpf_map_delete_elem(&mw_pending_mremap, &pid_tgid);
	if (mw_is_err_value(new_addr) || new_addr == old)
		return 0; /* failed, or resized in place: nothing moved */
	space = mw_current_space();
	h = bpf_map_lookup_elem(&mw_wx_history_map, &space);
	if (!h)
		return 0;
	mw_wx_move(h, MW_WX_POOL_ANON, old, old_end, new_addr, new_end, unmapped);
	mw_wx_move(h, MW_WX_POOL_FILE, old, old_end, new_addr, new_end, unmapped);
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
	__u32 rie;        /* READ_IMPLIES_EXEC applies to a PROT_READ request */
	__u32 exec_added; /* it made a later VMA executable */
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
	/* The kernel adds PROT_EXEC per VMA that may be executable, and keeps it for the rest. */
	if (w->rie && (flags & MW_VM_MAYEXEC))
		w->exec_added = 1;
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
		.rie = (c->reqprot & MW_PROT_READ) && mw_read_implies_exec(),
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
	if (w.exec_added)
		c->prot |= MW_PROT_EXEC;
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

	if (vma)
		file = BPF_CORE_READ(vma, vm_file);
	if (!mw_filter_task(pid_tgid, c->prot,
			    vma ? file != NULL : c->file != 0))
		return;
	s = bpf_map_lookup_elem(&mw_mprot_scratch_map, &zero);
	if (!s) {
		mw_count(MW_COUNTER_SCRATCH_MISSING);
		return;
	}
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
	if (!mw_filter_path(ev->path, ev->file.path_len, ev->file.flags) ||
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
	/* Judged, then taught, at entry: before any other thread's later call. */
	c.flags |= mw_wx_judge(&c, c.file != 0);
	mw_wx_learn(pid_tgid, &c, c.file != 0);
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

/*
 * Kernel backends: judged and taught in the hook, under the mmap write lock,
 * before the VMA changes; taught only when the hook lets the call go on.
 */
static __always_inline void mw_wx_hook(__u64 pid_tgid, struct mw_mprot_call *c,
				       struct vm_area_struct *vma, __s32 result, bool judged)
{
	bool has_file = BPF_CORE_READ(vma, vm_file) != NULL;

	if (!judged)
		c->flags |= mw_wx_judge(c, has_file);
	if (result == 0)
		mw_wx_learn(pid_tgid, c, has_file);
}

static __always_inline int mw_lsm_file_mprotect(__u64 *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_mprot_call *c;
	struct vm_area_struct *vma;
	__u64 vma_addr = 0;
	int ret = (int)ctx[3];

	if (mw_ignored(pid_tgid))
		return ret;
	bpf_probe_read_kernel(&vma_addr, sizeof(vma_addr), &ctx[0]);
	if (!vma_addr)
		return ret;
	c = mw_mprot_call_slot();
	if (!c)
		return ret;
	vma = (struct vm_area_struct *)vma_addr;
	mw_mprot_hook_call(c, vma, ctx[1], ctx[2]);
	c->flags |= mw_wx_judge(c, BPF_CORE_READ(vma, vm_file) != NULL);
	/* Judged before it takes effect, as if it succeeds (enforce.h). */
	if (mw_enforcing()) {
		__u32 reasons = mw_reasons_mprotect(BPF_CORE_READ(vma, vm_file), c->prot,
						    c->prev_prot, c->flags);

		c->action = mw_enforce_decide(pid_tgid, reasons, &c->enforced);
		ret = mw_enforce_verdict(ret, c->action);
	}
	mw_wx_hook(pid_tgid, c, vma, ret, true);
	mw_emit_mprotect(MW_BACKEND_LSM, pid_tgid, c, ret, vma);
	return ret; /* observed, or refused by enforcement */
}

static __always_inline int mw_fexit_security_file_mprotect(__u64 *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_mprot_call *c;
	__u64 vma = 0, reqprot = 0, prot = 0, ret = 0;

	if (mw_ignored(pid_tgid))
		return 0;
	bpf_get_func_arg(ctx, 0, &vma);
	bpf_get_func_arg(ctx, 1, &reqprot);
	bpf_get_func_arg(ctx, 2, &prot);
	bpf_get_func_ret(ctx, &ret);
	if (!vma)
		return 0;
	c = mw_mprot_call_slot();
	if (!c)
		return 0;
	mw_mprot_hook_call(c, (struct vm_area_struct *)vma, reqprot, prot);
	mw_wx_hook(pid_tgid, c, (struct vm_area_struct *)vma, (__s32)ret, false);
	mw_emit_mprotect(MW_BACKEND_FEXIT, pid_tgid, c, (__s32)ret, (struct vm_area_struct *)vma);
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
	mw_wx_hook(pid_tgid, c, (struct vm_area_struct *)c->vma, (__s32)MW_REGS_RET(regs), false);
	mw_emit_mprotect(MW_BACKEND_KPROBE, pid_tgid, c, (__s32)MW_REGS_RET(regs),
			 (struct vm_area_struct *)c->vma);
	bpf_map_delete_elem(&mw_pending_kprobe_mprotect, &pid_tgid);
	return 0;
}

#endif /* MAPWATCH_MPROTECT_H */
