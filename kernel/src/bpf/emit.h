/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Building and sending the two records. Every backend ends here, so every
 * record has the same fields whatever attach point saw the event.
 */
#ifndef MAPWATCH_EMIT_H
#define MAPWATCH_EMIT_H

#include "file.h"
#include "filter.h"

/* The arguments of a mapping call, as kept between entry and return. */
struct mw_call {
	__u64 len;
	__u64 prot;
	__u64 mmap_flags;
	__u64 pgoff;
	__u64 start_ns;
	struct file *file; /* held by the call until it returns */
};

/*
 * A per-thread store of calls in flight, for backends split in entry + return.
 * A plain (preallocated) hash, not an LRU: LRU maps take list-wide locks that
 * are a deadlock risk inside kprobes; a thread that exits mid-call has its
 * entry removed by the process-exit program instead.
 */
#define MW_PENDING_MAP(name)                                                                     \
	struct {                                                                                 \
		__uint(type, BPF_MAP_TYPE_HASH);                                                 \
		__uint(max_entries, MW_PENDING_ENTRIES);                                         \
		__type(key, __u64); /* pid_tgid */                                               \
		__type(value, struct mw_call);                                                   \
	} name SEC(".maps")

static __always_inline void mw_stash_call(void *map, __u64 pid_tgid, struct mw_call *call)
{
	if (bpf_map_update_elem(map, &pid_tgid, call, BPF_ANY))
		mw_count(MW_COUNTER_PENDING_MAP_FULL);
}

static __always_inline struct mw_call *mw_find_call(void *map, __u64 pid_tgid)
{
	struct mw_call *call = bpf_map_lookup_elem(map, &pid_tgid);

	if (!call)
		mw_count(MW_COUNTER_PENDING_MISSING);
	return call;
}

/* do_mmap returned `ret` (an address or a negative errno) for `call`. */
static __always_inline void mw_emit_do_mmap(__u16 backend, __u64 pid_tgid, struct mw_call *call,
					    __u64 ret)
{
	struct mw_scratch *s;
	struct mw_do_mmap *ev;

	if (!mw_filter_task(pid_tgid, call->prot, call->file != NULL))
		return;
	s = mw_scratch();
	if (!s)
		return;
	ev = &s->do_mmap;
	mw_fill_header(&ev->hdr, MW_EVENT_DO_MMAP, backend, pid_tgid);
	if (mw_is_err_value(ret)) {
		ev->addr = 0;
		ev->error = (__s32)ret;
	} else {
		ev->addr = ret;
		ev->error = 0;
	}
	ev->len = call->len;
	ev->prot = call->prot;
	ev->mmap_flags = call->mmap_flags;
	ev->pgoff = call->pgoff;
	ev->start_ns = call->start_ns;
	ev->_pad0 = 0;
	mw_file_info(call->file, &ev->file, s->path_buf, ev->path);
	if (!mw_filter_path(ev->path, ev->file.path_len, call->file != NULL) ||
	    !mw_rate_allows(pid_tgid))
		return;
	mw_output(ev, &ev->hdr, __builtin_offsetof(struct mw_do_mmap, path), ev->file.path_len,
		  MW_COUNTER_DO_MMAP_SENT, MW_COUNTER_DO_MMAP_RINGBUF_FULL);
}

/* The permission check for mapping `file` (NULL: anonymous memory). */
static __always_inline void mw_emit_security(__u16 backend, __u64 pid_tgid, struct file *file,
					     __u64 prot, __u64 mmap_flags, bool has_verdict,
					     __s32 verdict)
{
	struct mw_scratch *s;
	struct mw_security_mmap_file *ev;

	if (!mw_filter_task(pid_tgid, prot, file != NULL))
		return;
	s = mw_scratch();
	if (!s)
		return;
	ev = &s->security;
	mw_fill_header(&ev->hdr, MW_EVENT_SECURITY_MMAP_FILE, backend, pid_tgid);
	ev->prot = prot;
	ev->mmap_flags = mmap_flags;
	ev->verdict = has_verdict ? verdict : 0;
	ev->has_verdict = has_verdict;
	mw_file_info(file, &ev->file, s->path_buf, ev->path);
	if (!mw_filter_path(ev->path, ev->file.path_len, file != NULL) || !mw_rate_allows(pid_tgid))
		return;
	mw_output(ev, &ev->hdr, __builtin_offsetof(struct mw_security_mmap_file, path),
		  ev->file.path_len, MW_COUNTER_SECURITY_SENT, MW_COUNTER_SECURITY_RINGBUF_FULL);
}

/* Calls in flight of exiting threads, which will never return. */
static __always_inline void mw_forget_thread(__u64 pid_tgid);

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
	mw_fill_header(&hdr, MW_EVENT_PROCESS_EXIT, MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid);
	hdr.size = sizeof(hdr);
	if (bpf_ringbuf_output(&mw_events, &hdr, sizeof(hdr), 0))
		mw_count(MW_COUNTER_EXIT_RINGBUF_FULL);
	else
		mw_count(MW_COUNTER_EXIT_SENT);
	return 0;
}

#endif /* MAPWATCH_EMIT_H */
