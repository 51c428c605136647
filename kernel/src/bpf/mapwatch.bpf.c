// SPDX-License-Identifier: GPL-2.0
/* mapwatch BPF programs: thin entry points; the logic lives in the headers. */
#include "syscall_tracepoint.h"

char LICENSE[] SEC("license") = "GPL";

SEC("tracepoint/syscalls/sys_enter_mmap")
int mw_sys_enter_mmap(struct mw_sys_enter_ctx *ctx)
{
	return mw_tp_enter_mmap(ctx);
}

SEC("tracepoint/syscalls/sys_exit_mmap")
int mw_sys_exit_mmap(struct mw_sys_exit_ctx *ctx)
{
	return mw_tp_exit_mmap(ctx);
}
