/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Backend "syscall_tracepoint": sys_enter_mmap / sys_exit_mmap. Loads on any
 * kernel with syscall tracepoints. It sees mmap(2) calls only: mappings the
 * kernel makes itself (the ELF loader at execve, shmat) never pass here, and
 * the LSM verdict is not visible.
 */
#ifndef MAPWATCH_SYSCALL_TRACEPOINT_H
#define MAPWATCH_SYSCALL_TRACEPOINT_H

#include "emit.h"

MW_PENDING_MAP(mw_pending_tp_mmap);

/* The mmap(2) arguments, with the fd resolved to its open file. */
static __always_inline void mw_tp_read_call(struct mw_sys_enter_ctx *ctx, struct mw_call *call)
{
	call->len = ctx->args[1];
	call->prot = ctx->args[2];
	call->mmap_flags = ctx->args[3];
	call->pgoff = ctx->args[5] >> MW_PAGE_SHIFT;
	call->start_ns = bpf_ktime_get_ns();
	call->file = NULL;
	/* The fd arrives zero-extended from 32 bits; the kernel ignores it for anonymous maps. */
	if (!(call->mmap_flags & MW_MAP_ANONYMOUS))
		call->file = mw_fd_file((int)ctx->args[4]);
}

/* security_mmap_file runs before the mapping is made: report it at entry. */
static __always_inline int mw_tp_security_enter(struct mw_sys_enter_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call call;

	if (mw_ignored(pid_tgid))
		return 0;
	mw_tp_read_call(ctx, &call);
	mw_emit_security(MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid, call.file, call.prot,
			 call.mmap_flags, false, 0);
	return 0;
}

static __always_inline int mw_tp_do_mmap_enter(struct mw_sys_enter_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call call;

	if (mw_ignored(pid_tgid))
		return 0;
	mw_tp_read_call(ctx, &call);
	mw_stash_call(&mw_pending_tp_mmap, pid_tgid, &call);
	return 0;
}

static __always_inline int mw_tp_do_mmap_exit(struct mw_sys_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call *call;

	if (mw_ignored(pid_tgid))
		return 0;
	call = mw_find_call(&mw_pending_tp_mmap, pid_tgid);
	if (!call)
		return 0;
	mw_emit_do_mmap(MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid, call, (__u64)ctx->ret);
	bpf_map_delete_elem(&mw_pending_tp_mmap, &pid_tgid);
	return 0;
}

#endif /* MAPWATCH_SYSCALL_TRACEPOINT_H */
