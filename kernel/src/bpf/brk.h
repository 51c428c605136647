/* SPDX-License-Identifier: GPL-2.0 */
/*
 * brk(2) growing an executable heap. Under personality(READ_IMPLIES_EXEC)
 * the kernel makes the heap PROT_READ|PROT_WRITE|PROT_EXEC (do_brk_flags:
 * VM_DATA_DEFAULT_FLAGS), without mmap, mprotect or any hook of the mapping
 * events. Such a growth is reported as a do_mmap record of the new pages
 * (MW_CALL_BRK | MW_CALL_IMPLIED_EXEC; anonymous, MAP_PRIVATE), whatever
 * backend serves do_mmap: brk never passes through do_mmap. An ordinary heap
 * (no READ_IMPLIES_EXEC) is not reported: it is not executable.
 *
 * 64-bit calls (sys_{enter,exit}_brk); a 32-bit brk is not seen here.
 */
#ifndef MAPWATCH_BRK_H
#define MAPWATCH_BRK_H

#include "emit.h"

#define MW_PAGE_SIZE (1ULL << MW_PAGE_SHIFT)
#define MW_MAP_PRIVATE 0x02

/* The break before the call, per thread, only while READ_IMPLIES_EXEC is set. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MW_PENDING_ENTRIES);
	__type(key, __u64); /* pid_tgid */
	__type(value, __u64);
} mw_pending_brk SEC(".maps");

static __always_inline int mw_tp_brk_enter(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task;
	__u64 old_brk;

	if (mw_ignored(pid_tgid) || !mw_read_implies_exec())
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	old_brk = BPF_CORE_READ(task, mm, brk);
	if (bpf_map_update_elem(&mw_pending_brk, &pid_tgid, &old_brk, BPF_ANY))
		mw_count(MW_COUNTER_BRK_PENDING_MAP_FULL);
	return 0;
}

static __always_inline int mw_tp_brk_exit(struct mw_sys_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 *old = bpf_map_lookup_elem(&mw_pending_brk, &pid_tgid);
	__u64 start, end;
	struct mw_call call = {};

	if (!old)
		return 0;
	/* The heap's pages: [PAGE_ALIGN(old break), PAGE_ALIGN(new break)). */
	start = (*old + MW_PAGE_SIZE - 1) & ~(MW_PAGE_SIZE - 1);
	end = ((__u64)ctx->ret + MW_PAGE_SIZE - 1) & ~(MW_PAGE_SIZE - 1);
	bpf_map_delete_elem(&mw_pending_brk, &pid_tgid);
	if (end <= start)
		return 0; /* shrunk, unchanged, or grown inside the last page */
	call.len = end - start;
	call.prot = MW_PROT_READ | MW_PROT_WRITE;
	call.mmap_flags = MW_MAP_PRIVATE | MW_MAP_ANONYMOUS;
	call.start_ns = bpf_ktime_get_ns();
	call.fd = -1;
	call.call_flags = MW_CALL_BRK;
	mw_emit_do_mmap(MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid, &call, start);
	return 0;
}

/* A thread that exits inside brk never returns. */
static __always_inline void mw_brk_forget_thread(__u64 pid_tgid)
{
	bpf_map_delete_elem(&mw_pending_brk, &pid_tgid);
}

#endif /* MAPWATCH_BRK_H */
