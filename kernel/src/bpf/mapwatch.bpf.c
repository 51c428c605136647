// SPDX-License-Identifier: GPL-2.0
/*
 * mapwatch BPF programs: thin entry points, one per attach point; the logic
 * lives in the headers. The agent attaches, per event, the programs of the
 * one backend it selected: that choice decides what is reported.
 */
#include "syscall_tracepoint.h"
#include "kernel_hooks.h"
#include "exit.h"
#include "compat.h"
#include "exec.h"
#include "mprotect.h"
#include "brk.h"
#include "shm.h"

char LICENSE[] SEC("license") = "GPL";

/* Backend syscall_tracepoint. */

SEC("tracepoint/syscalls/sys_enter_mmap")
int mw_tp_security_mmap_file(struct mw_sys_enter_ctx *ctx)
{
	return mw_tp_security_enter(ctx);
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int mw_tp_security_exit_mmap(struct mw_sys_exit_ctx *ctx)
{
	return mw_tp_security_exit(ctx);
}

SEC("tracepoint/syscalls/sys_enter_mmap")
int mw_tp_enter_mmap(struct mw_sys_enter_ctx *ctx)
{
	return mw_tp_do_mmap_enter(ctx);
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int mw_tp_exit_mmap(struct mw_sys_exit_ctx *ctx)
{
	return mw_tp_do_mmap_exit(ctx);
}

/* Thread and process exits: calls in flight and cached state are forgotten. */

SEC("tracepoint/sched/sched_process_exit")
int mw_tp_process_exit(void *ctx)
{
	mw_mprotect_exit();
	mw_brk_forget_thread(bpf_get_current_pid_tgid());
	mw_shmat_forget_thread(bpf_get_current_pid_tgid());
	return mw_process_exit();
}

/* Backend fexit. */

SEC("fexit/do_mmap")
int mw_fexit_do_mmap_prog(__u64 *ctx)
{
	return mw_fexit_do_mmap(ctx);
}

SEC("fexit/security_mmap_file")
int mw_fexit_security_mmap_file_prog(__u64 *ctx)
{
	return mw_fexit_security_mmap_file(ctx);
}

/* Backend lsm. */

SEC("lsm/mmap_file")
int mw_lsm_mmap_file_prog(__u64 *ctx)
{
	return mw_lsm_mmap_file(ctx);
}

/* Backend kprobe. */

SEC("kprobe/do_mmap")
int mw_kprobe_do_mmap_prog(struct pt_regs *ctx)
{
	return mw_kprobe_do_mmap(ctx);
}

SEC("kretprobe/do_mmap")
int mw_kretprobe_do_mmap_prog(struct pt_regs *ctx)
{
	return mw_kretprobe_do_mmap(ctx);
}

SEC("kprobe/security_mmap_file")
int mw_kprobe_security_mmap_file_prog(struct pt_regs *ctx)
{
	return mw_kprobe_security_mmap_file(ctx);
}

SEC("kretprobe/security_mmap_file")
int mw_kretprobe_security_mmap_file_prog(struct pt_regs *ctx)
{
	return mw_kretprobe_security_mmap_file(ctx);
}

/* Backend syscall_tracepoint, 32-bit calls (compat.h): raw syscall tracepoints, early exit. */

SEC("tp_btf/sys_enter")
int mw_tp_compat_enter(__u64 *ctx)
{
	return mw_compat_enter((struct pt_regs *)ctx[0], (long)ctx[1]);
}

SEC("tp_btf/sys_exit")
int mw_tp_compat_exit(__u64 *ctx)
{
	return mw_compat_exit((struct pt_regs *)ctx[0], (long)ctx[1]);
}

/* execve: the agent refreshes the process; the ELF loader's mappings (exec.h). */

SEC("tracepoint/sched/sched_process_exec")
int mw_tp_process_exec(void *ctx)
{
	mw_mprotect_exec();
	return mw_process_exec();
}

/* Measurement only (compat.h): never attached by the agent. */

SEC("raw_tp/sys_enter")
int mw_bench_raw_tp_sys_enter(__u64 *ctx)
{
	return mw_bench_raw_tp_enter(ctx);
}

SEC("tracepoint/raw_syscalls/sys_enter")
int mw_bench_tp_raw_syscalls_enter(struct mw_sys_enter_ctx *ctx)
{
	long nr = ctx->syscall_nr;

	if (!mw_compat_nr_is_mmap(nr) || !mw_in_compat_syscall())
		return 0;
	mw_count(MW_COUNTER_COMPAT_MPROTECT_UNWATCHED);
	return 0;
}

/* Event security_file_mprotect (mprotect.h). */

SEC("tracepoint/syscalls/sys_enter_mprotect")
int mw_tp_enter_mprotect(struct mw_sys_enter_ctx *ctx)
{
	return mw_tp_mprotect_enter(ctx, false);
}

SEC("tracepoint/syscalls/sys_exit_mprotect")
int mw_tp_exit_mprotect(struct mw_sys_exit_ctx *ctx)
{
	return mw_tp_mprotect_exit(ctx);
}

SEC("tracepoint/syscalls/sys_enter_pkey_mprotect")
int mw_tp_enter_pkey_mprotect(struct mw_sys_enter_ctx *ctx)
{
	return mw_tp_mprotect_enter(ctx, true);
}

SEC("tracepoint/syscalls/sys_exit_pkey_mprotect")
int mw_tp_exit_pkey_mprotect(struct mw_sys_exit_ctx *ctx)
{
	return mw_tp_mprotect_exit(ctx);
}

/* The W->X history follows ranges moved by mremap (any backend of the event). */

SEC("tracepoint/syscalls/sys_enter_mremap")
int mw_tp_enter_mremap(struct mw_sys_enter_ctx *ctx)
{
	return mw_tp_mremap_enter(ctx);
}

SEC("tracepoint/syscalls/sys_exit_mremap")
int mw_tp_exit_mremap(struct mw_sys_exit_ctx *ctx)
{
	return mw_tp_mremap_exit(ctx);
}

SEC("lsm/file_mprotect")
int mw_lsm_file_mprotect_prog(__u64 *ctx)
{
	return mw_lsm_file_mprotect(ctx);
}

SEC("fexit/security_file_mprotect")
int mw_fexit_security_file_mprotect_prog(__u64 *ctx)
{
	return mw_fexit_security_file_mprotect(ctx);
}

SEC("kprobe/security_file_mprotect")
int mw_kprobe_security_file_mprotect_prog(struct pt_regs *ctx)
{
	return mw_kprobe_security_file_mprotect(ctx);
}

SEC("kretprobe/security_file_mprotect")
int mw_kretprobe_security_file_mprotect_prog(struct pt_regs *ctx)
{
	return mw_kretprobe_security_file_mprotect(ctx);
}

/* The W->X history of a forked child's new address space (mprotect.h). */

SEC("tp_btf/sched_process_fork")
int mw_tp_btf_process_fork(__u64 *ctx)
{
	return mw_wx_fork((struct task_struct *)ctx[0], (struct task_struct *)ctx[1]);
}

/* brk(2) growing an executable heap (brk.h), with any backend of do_mmap. */

SEC("tracepoint/syscalls/sys_enter_brk")
int mw_tp_enter_brk(struct mw_sys_enter_ctx *ctx)
{
	return mw_tp_brk_enter();
}

SEC("tracepoint/syscalls/sys_exit_brk")
int mw_tp_exit_brk(struct mw_sys_exit_ctx *ctx)
{
	return mw_tp_brk_exit(ctx);
}

/* shmat(2) on the syscall_tracepoint backend of do_mmap (shm.h). */

SEC("tracepoint/syscalls/sys_enter_shmat")
int mw_tp_enter_shmat(struct mw_sys_enter_ctx *ctx)
{
	return mw_tp_shmat_enter(ctx);
}

SEC("tracepoint/syscalls/sys_exit_shmat")
int mw_tp_exit_shmat(struct mw_sys_exit_ctx *ctx)
{
	return mw_tp_shmat_exit(ctx);
}
