/* SPDX-License-Identifier: GPL-2.0 */
/*
 * shmat(2) on the syscall_tracepoint backend. The kernel maps a System V
 * shared memory segment with do_mmap from inside shmat, which the kernel
 * backends of do_mmap see; the mmap tracepoints do not. shmat(SHM_EXEC) is
 * a way to executable memory, so it is a do_mmap record here too
 * (MW_CALL_SHMAT; MAP_SHARED; prot from the flags as do_shmat computes it),
 * with the segment's file read from the VMA the call made, like mmap's.
 *
 * 64-bit calls; a 32-bit shmat (ipc(2) multiplexer) is not seen here.
 */
#ifndef MAPWATCH_SHM_H
#define MAPWATCH_SHM_H

#include "emit.h"

#define MW_SHM_RDONLY 010000
#define MW_SHM_EXEC 0100000
#define MW_MAP_SHARED 0x01

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_PENDING_ENTRIES);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct mw_call);
} mw_pending_shmat SEC(".maps");

static __always_inline int mw_tp_shmat_enter(struct mw_sys_enter_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 shmflg = ctx->args[2];
	struct mw_call call = {};

	if (mw_ignored(pid_tgid))
		return 0;
	/* do_shmat: read always, write unless SHM_RDONLY, exec with SHM_EXEC. */
	call.prot = MW_PROT_READ | (shmflg & MW_SHM_RDONLY ? 0 : MW_PROT_WRITE) |
		    (shmflg & MW_SHM_EXEC ? MW_PROT_EXEC : 0);
	call.mmap_flags = MW_MAP_SHARED;
	call.start_ns = bpf_ktime_get_ns();
	call.fd = -1;
	call.call_flags = MW_CALL_SHMAT;
	mw_stash_call(&mw_pending_shmat, pid_tgid, &call, MW_COUNTER_PENDING_MAP_FULL);
	return 0;
}

struct mw_vma_len {
	__u64 len;
};

static long mw_vma_len_cb(struct task_struct *task, struct vm_area_struct *vma,
			  struct mw_vma_len *l)
{
	l->len = BPF_CORE_READ(vma, vm_end) - BPF_CORE_READ(vma, vm_start);
	return 0;
}

static __always_inline int mw_tp_shmat_exit(struct mw_sys_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_vma_len vma = {};
	struct mw_call *call;

	if (mw_ignored(pid_tgid))
		return 0;
	call = mw_find_call(&mw_pending_shmat, pid_tgid);
	if (!call)
		return 0;
	/* The segment's size is the new VMA's (0 when it cannot be read). */
	if (!mw_is_err_value(ctx->ret))
		bpf_find_vma(bpf_get_current_task_btf(), ctx->ret, mw_vma_len_cb, &vma, 0);
	call->len = vma.len;
	mw_emit_do_mmap(MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid, call, (__u64)ctx->ret);
	bpf_map_delete_elem(&mw_pending_shmat, &pid_tgid);
	return 0;
}

/* A thread that exits inside shmat never returns. */
static __always_inline void mw_shmat_forget_thread(__u64 pid_tgid)
{
	bpf_map_delete_elem(&mw_pending_shmat, &pid_tgid);
}

#endif /* MAPWATCH_SHM_H */
