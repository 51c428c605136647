/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Backend "syscall_tracepoint": sys_enter_mmap / sys_exit_mmap. Loads on any
 * kernel with syscall tracepoints. It sees mmap(2) calls only: mappings the
 * kernel makes itself (the ELF loader at execve, shmat) never pass here, and
 * the LSM verdict is not visible.
 *
 * File identity: the entry keeps the arguments only, the fd as a number; it
 * takes no `struct file *` (it would hold no reference, and another thread
 * can close the fd and reuse the file before the call returns). At the exit,
 * a successful call's file is read from the VMA it created, under the mmap
 * lock (vma.h); a failed call mapped nothing and reports its fd and no file.
 *
 * Both events are reported at the exit, each from its own entry store, so
 * either can be enabled alone. security_mmap_file therefore says what the
 * call asked for and, when it succeeded, the file the kernel mapped; it has
 * no verdict (has_verdict 0): a failure may come from the LSM check or from
 * anything else in mmap.
 *
 * Order: the check is sent before its mapping, as on the kernel backends (the
 * agent makes it a child span of the mapping that follows it on the same
 * thread). Programs on one tracepoint run in attach order, and the agent
 * attaches do_mmap's first, so the do_mmap exit program sends a pending check
 * of its thread itself, before its own record, and marks it reported; the
 * security exit program then only removes the entry. Whichever runs first,
 * the check goes out first and once.
 */
#ifndef MAPWATCH_SYSCALL_TRACEPOINT_H
#define MAPWATCH_SYSCALL_TRACEPOINT_H

#include "emit.h"

/* The mmap(2) arguments; no file is taken from the fd table. */
static __always_inline void mw_tp_read_call(struct mw_sys_enter_ctx *ctx, struct mw_call *call)
{
	call->len = ctx->args[1];
	call->prot = ctx->args[2];
	call->mmap_flags = ctx->args[3];
	call->pgoff = ctx->args[5] >> MW_PAGE_SHIFT;
	call->start_ns = bpf_ktime_get_ns();
	call->file = NULL;
	call->reported = 0;
	/* The fd arrives zero-extended from 32 bits; the kernel ignores it for anonymous maps. */
	call->fd = (call->mmap_flags & MW_MAP_ANONYMOUS) ? -1 : (__s32)ctx->args[4];
}

static __always_inline int mw_tp_enter(struct mw_sys_enter_ctx *ctx, void *pending,
				       __u32 full_counter)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call call = {};

	if (mw_ignored(pid_tgid))
		return 0;
	mw_tp_read_call(ctx, &call);
	mw_stash_call(pending, pid_tgid, &call, full_counter);
	return 0;
}

static __always_inline int mw_tp_do_mmap_enter(struct mw_sys_enter_ctx *ctx)
{
	return mw_tp_enter(ctx, &mw_pending_tp_mmap, MW_COUNTER_PENDING_MAP_FULL);
}

static __always_inline int mw_tp_security_enter(struct mw_sys_enter_ctx *ctx)
{
	return mw_tp_enter(ctx, &mw_pending_tp_security, MW_COUNTER_SECURITY_PENDING_MAP_FULL);
}

/* Sends the thread's pending security_mmap_file check, once (see "Order" above). */
static __always_inline void mw_tp_report_check(struct mw_call *check, __u64 pid_tgid, __u64 ret)
{
	if (check->reported)
		return;
	mw_emit_security(MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid, check, ret, false, 0);
	check->reported = 1;
}

static __always_inline int mw_tp_do_mmap_exit(struct mw_sys_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call *call, *check;

	if (mw_ignored(pid_tgid))
		return 0;
	/* A plain lookup: no check pending is normal (that event elsewhere, or off). */
	check = bpf_map_lookup_elem(&mw_pending_tp_security, &pid_tgid);
	if (check)
		mw_tp_report_check(check, pid_tgid, (__u64)ctx->ret);
	call = mw_find_call(&mw_pending_tp_mmap, pid_tgid);
	if (!call)
		return 0;
	mw_emit_do_mmap(MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid, call, (__u64)ctx->ret);
	bpf_map_delete_elem(&mw_pending_tp_mmap, &pid_tgid);
	return 0;
}

static __always_inline int mw_tp_security_exit(struct mw_sys_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call *check;

	if (mw_ignored(pid_tgid))
		return 0;
	check = mw_find_call(&mw_pending_tp_security, pid_tgid);
	if (!check)
		return 0;
	mw_tp_report_check(check, pid_tgid, (__u64)ctx->ret);
	bpf_map_delete_elem(&mw_pending_tp_security, &pid_tgid);
	return 0;
}

#endif /* MAPWATCH_SYSCALL_TRACEPOINT_H */
