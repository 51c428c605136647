/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Backend "syscall_tracepoint", 32-bit (compat) calls. On x86-64 the
 * per-syscall tracepoints (syscalls/sys_enter_mmap, ...) skip every compat
 * syscall: a -m32 program, or a 64-bit one using `int $0x80`, maps memory
 * unseen. The raw syscall tracepoints (sys_enter / sys_exit) fire for every
 * syscall, compat ones included, so these programs sit there, as tp_btf
 * programs (BPF_PROG_TYPE_TRACING: typed arguments, no perf record copy),
 * and leave at once unless the call is one of ours:
 *   1. the syscall number (sys_enter: the `id` argument; sys_exit:
 *      regs->orig_ax) is one of the i386 numbers below: two compares;
 *   2. the task is in a compat syscall (in_ia32_syscall(): TS_COMPAT in
 *      thread_info.status), since the same numbers are other calls in the
 *      64-bit table (90 chmod, 125 capget, 192 lgetxattr).
 * The cost of the early exit on every syscall is measured in docs/backends.md.
 *
 * mmap2 and old_mmap go into the same per-thread stores as mmap(2)
 * (mw_pending_tp_mmap / mw_pending_tp_security: a thread is in one syscall at
 * a time) and leave through the same emit path, with the same file identity
 * rules (the VMA the call created, read under the mmap lock).
 *
 * Hook point for mprotect (another header): mw_compat_nr_is(),
 * mw_in_compat_syscall() and mw_compat_arg() are all a compat mprotect /
 * pkey_mprotect handler needs; the place to call it is mw_compat_enter(),
 * where mw_compat_unwatched() counts those calls until then
 * (MW_COUNTER_COMPAT_MPROTECT_UNWATCHED): counted, not silent.
 */
#ifndef MAPWATCH_COMPAT_H
#define MAPWATCH_COMPAT_H

#include "syscall_tracepoint.h"

/* i386 syscall numbers (arch/x86/entry/syscalls/syscall_32.tbl). */
#define MW_I386_OLD_MMAP 90        /* old_mmap(struct mmap_arg_struct *) */
#define MW_I386_MPROTECT 125
#define MW_I386_MMAP2 192          /* mmap2(addr, len, prot, flags, fd, pgoff in 4 KiB units) */
#define MW_I386_PKEY_MPROTECT 380

#define MW_TS_COMPAT 0x0002 /* thread_info.status: a 32-bit syscall is running */

struct thread_info___mw_compat {
	__u32 status;
} __attribute__((preserve_access_index));

struct task_struct___mw_compat {
	struct thread_info___mw_compat thread_info;
} __attribute__((preserve_access_index));

/* in_ia32_syscall(): the current task is inside a 32-bit syscall. */
static __always_inline bool mw_in_compat_syscall(void)
{
	struct task_struct___mw_compat *task = (void *)bpf_get_current_task();

	return BPF_CORE_READ(task, thread_info.status) & MW_TS_COMPAT;
}

/* Argument `n` (0-5) of an i386 syscall: ebx, ecx, edx, esi, edi, ebp (32 bits each). */
#define mw_compat_arg(regs, n)                                                                   \
	((__u32)((n) == 0 ? (regs)->bx :                                                         \
		 (n) == 1 ? (regs)->cx :                                                         \
		 (n) == 2 ? (regs)->dx :                                                         \
		 (n) == 3 ? (regs)->si :                                                         \
		 (n) == 4 ? (regs)->di :                                                         \
			    (regs)->bp))

static __always_inline bool mw_compat_nr_is_mmap(long nr)
{
	return nr == MW_I386_MMAP2 || nr == MW_I386_OLD_MMAP;
}

static __always_inline bool mw_compat_nr_is_mprotect(long nr)
{
	return nr == MW_I386_MPROTECT || nr == MW_I386_PKEY_MPROTECT;
}

/* old_mmap's single argument points to this (all 32-bit, offset in bytes). */
struct mw_i386_mmap_args {
	__u32 addr;
	__u32 len;
	__u32 prot;
	__u32 flags;
	__u32 fd;
	__u32 offset;
};

/* The arguments of a compat mmap2 / old_mmap call, as mw_tp_read_call does for mmap(2). */
static __always_inline void mw_compat_read_call(struct pt_regs *regs, long nr, struct mw_call *call)
{
	struct mw_i386_mmap_args a = {};

	if (nr == MW_I386_MMAP2) {
		a.len = mw_compat_arg(regs, 1);
		a.prot = mw_compat_arg(regs, 2);
		a.flags = mw_compat_arg(regs, 3);
		a.fd = mw_compat_arg(regs, 4);
		call->pgoff = mw_compat_arg(regs, 5); /* 4 KiB units = pages on x86 */
	} else {
		/* A bad pointer: the call fails with EFAULT and is reported as such. */
		if (bpf_probe_read_user(&a, sizeof(a), (void *)(unsigned long)mw_compat_arg(regs, 0)))
			__builtin_memset(&a, 0, sizeof(a));
		call->pgoff = a.offset >> MW_PAGE_SHIFT;
	}
	call->len = a.len;
	call->prot = a.prot;
	call->mmap_flags = a.flags;
	call->start_ns = bpf_ktime_get_ns();
	call->file = NULL;
	call->reported = 0;
	call->fd = (call->mmap_flags & MW_MAP_ANONYMOUS) ? -1 : (__s32)a.fd;
}

/*
 * Compat mprotect / pkey_mprotect: the hook point for the mprotect event.
 * Nothing reports them yet on this backend, so they are counted.
 */
static __always_inline void mw_compat_unwatched(long nr)
{
	if (mw_compat_nr_is_mprotect(nr) && mw_in_compat_syscall())
		mw_count(MW_COUNTER_COMPAT_MPROTECT_UNWATCHED);
}

/* Which events the compat programs serve (set by the agent, per event it runs on this backend). */
#define MW_COMPAT_DO_MMAP (1U << 0)
#define MW_COMPAT_SECURITY (1U << 1)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} mw_compat_config SEC(".maps");

static __always_inline __u32 mw_compat_events(void)
{
	__u32 zero = 0, *events = bpf_map_lookup_elem(&mw_compat_config, &zero);

	return events ? *events : 0;
}

/*
 * raw sys_enter(regs, id): keeps a compat mmap's arguments for each event
 * served. One program for both events: every program on sys_enter costs
 * every syscall of the machine its dispatch (docs/backends.md).
 */
static __always_inline int mw_compat_enter(struct pt_regs *regs, long nr)
{
	__u64 pid_tgid;
	struct mw_call call = {};
	__u32 events;

	if (!mw_compat_nr_is_mmap(nr)) {
		if (mw_compat_nr_is_mprotect(nr))
			mw_compat_unwatched(nr);
		return 0;
	}
	if (!mw_in_compat_syscall())
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	if (mw_ignored(pid_tgid))
		return 0;
	events = mw_compat_events();
	mw_compat_read_call(regs, nr, &call);
	if (events & MW_COMPAT_DO_MMAP)
		mw_stash_call(&mw_pending_tp_mmap, pid_tgid, &call, MW_COUNTER_PENDING_MAP_FULL);
	if (events & MW_COMPAT_SECURITY)
		mw_stash_call(&mw_pending_tp_security, pid_tgid, &call,
			      MW_COUNTER_SECURITY_PENDING_MAP_FULL);
	return 0;
}

/* raw sys_exit(regs, ret): as sys_exit_mmap does for mmap(2), the check first. */
static __always_inline int mw_compat_exit(struct pt_regs *regs, long ret)
{
	__u64 pid_tgid;
	struct mw_call *call, *check;
	__u32 events;

	if (!mw_compat_nr_is_mmap(regs->orig_ax) || !mw_in_compat_syscall())
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	if (mw_ignored(pid_tgid))
		return 0;
	events = mw_compat_events();
	if (events & MW_COMPAT_SECURITY) {
		check = mw_find_call(&mw_pending_tp_security, pid_tgid);
		if (check) {
			mw_tp_report_check(check, pid_tgid, (__u64)ret);
			bpf_map_delete_elem(&mw_pending_tp_security, &pid_tgid);
		}
	}
	if (events & MW_COMPAT_DO_MMAP) {
		call = mw_find_call(&mw_pending_tp_mmap, pid_tgid);
		if (!call)
			return 0;
		mw_emit_do_mmap(MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid, call, (__u64)ret);
		bpf_map_delete_elem(&mw_pending_tp_mmap, &pid_tgid);
	}
	return 0;
}

/*
 * Measurement only (docs/backends.md, "Compat calls"): the same early exit
 * as a raw_tp program (untyped context, registers read with a helper) and as
 * a classic tracepoint on raw_syscalls/sys_enter (the kernel copies a perf
 * record of the id and six arguments before the program runs). The agent
 * never attaches these.
 */
static __always_inline int mw_bench_raw_tp_enter(__u64 *args)
{
	long nr = (long)args[1];

	if (!mw_compat_nr_is_mmap(nr) || !mw_in_compat_syscall())
		return 0;
	mw_count(MW_COUNTER_COMPAT_MPROTECT_UNWATCHED); /* never reached in the benchmark */
	return 0;
}

#endif /* MAPWATCH_COMPAT_H */
