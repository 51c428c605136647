/* SPDX-License-Identifier: GPL-2.0 */
/* Thread and process exits: calls in flight and cached state are forgotten. */
#ifndef MAPWATCH_EXIT_H
#define MAPWATCH_EXIT_H

#include "pending.h"
#include "filter.h"

/*
 * A thread exits: forget its calls in flight. When it is the last one (the
 * group leader), tell the agent, whose cache can forget the process: no
 * record, only a hint, so it is not filtered.
 */
static __always_inline int mw_process_exit(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_header hdr;

	mw_forget_thread(pid_tgid);
	if ((__u32)pid_tgid != (__u32)(pid_tgid >> 32) || mw_ignored(pid_tgid))
		return 0;
	mw_forget_process(pid_tgid >> 32);
	/* Every byte of hdr is set there (padding included): no stack bytes leave. */
	mw_fill_header(&hdr, MW_EVENT_PROCESS_EXIT, MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid);
	hdr.size = sizeof(hdr);
	if (bpf_ringbuf_output(&mw_events, &hdr, sizeof(hdr), 0))
		mw_count(MW_COUNTER_EXIT_RINGBUF_FULL);
	else
		mw_count(MW_COUNTER_EXIT_SENT);
	return 0;
}

#endif /* MAPWATCH_EXIT_H */
