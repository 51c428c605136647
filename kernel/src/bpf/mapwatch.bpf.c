// SPDX-License-Identifier: GPL-2.0
/*
 * mapwatch BPF programs: thin entry points, one per attach point; the logic
 * lives in the headers. The agent attaches, per event, the programs of the
 * one backend it selected: that choice decides what is reported.
 */
#include "syscall_tracepoint.h"
#include "kernel_hooks.h"
#include "exit.h"

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
