/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Calls in flight: for backends split in entry + return, the arguments a
 * thread's call had at entry, kept until it returns. Every store of calls in
 * flight is declared here, so a thread that exits mid-call can be forgotten
 * in all of them (mw_forget_thread).
 */
#ifndef MAPWATCH_PENDING_H
#define MAPWATCH_PENDING_H

#include "common.h"

/* The arguments of a mapping call, as kept between entry and return. */
struct mw_call {
	__u64 len;
	__u64 prot;
	__u64 mmap_flags;
	__u64 pgoff;
	__u64 start_ns;
	/*
	 * Kernel backends: the hooked function's file argument, held by the call
	 * until it returns. Never set by syscall_tracepoint, which holds nothing
	 * (see syscall_tracepoint.h).
	 */
	struct file *file;
	__s32 fd;   /* syscall_tracepoint: mmap(2)'s fd argument; -1 when MAP_ANONYMOUS */
	/*
	 * syscall_tracepoint, security_mmap_file's store: the record was already
	 * sent by the do_mmap exit program (see syscall_tracepoint.h); the
	 * entry only waits for its own exit program to remove it.
	 */
	__u32 reported;
	/* lsm backend: what enforcement did (enforce.h); zero elsewhere. */
	__u32 enforced; /* MW_REASON_* acted on */
	__u16 action;   /* MW_ACTION_* */
	__u16 call_flags; /* MW_CALL_IMPLIED_EXEC, MW_CALL_BRK: sent with the record */
};

/*
 * A per-thread store of calls in flight. A plain (preallocated) hash, not an
 * LRU: LRU maps take list-wide locks that are a deadlock risk inside kprobes;
 * a thread that exits mid-call has its entries removed by the process-exit
 * program instead (mw_forget_thread).
 */
#define MW_PENDING_MAP(name)                                                                     \
	struct {                                                                                 \
		__uint(type, BPF_MAP_TYPE_HASH);                                                 \
		__uint(max_entries, MW_PENDING_ENTRIES);                                         \
		__type(key, __u64); /* pid_tgid */                                               \
		__type(value, struct mw_call);                                                   \
	} name SEC(".maps")

/* syscall_tracepoint: sys_enter_mmap -> sys_exit_mmap, one store per event. */
MW_PENDING_MAP(mw_pending_tp_mmap);
MW_PENDING_MAP(mw_pending_tp_security);
/* kprobe: entry -> kretprobe. */
MW_PENDING_MAP(mw_pending_kprobe_do_mmap);
MW_PENDING_MAP(mw_pending_kprobe_security);

/* Keeps `call` until the thread's return; counts `full_counter` when the store is full. */
static __always_inline void mw_stash_call(void *map, __u64 pid_tgid, struct mw_call *call,
					  __u32 full_counter)
{
	if (bpf_map_update_elem(map, &pid_tgid, call, BPF_ANY))
		mw_count(full_counter);
}

static __always_inline struct mw_call *mw_find_call(void *map, __u64 pid_tgid)
{
	struct mw_call *call = bpf_map_lookup_elem(map, &pid_tgid);

	if (!call)
		mw_count(MW_COUNTER_PENDING_MISSING);
	return call;
}

/* Calls in flight of an exiting thread, which will never return. */
static __always_inline void mw_forget_thread(__u64 pid_tgid)
{
	bpf_map_delete_elem(&mw_pending_tp_mmap, &pid_tgid);
	bpf_map_delete_elem(&mw_pending_tp_security, &pid_tgid);
	bpf_map_delete_elem(&mw_pending_kprobe_do_mmap, &pid_tgid);
	bpf_map_delete_elem(&mw_pending_kprobe_security, &pid_tgid);
}

#endif /* MAPWATCH_PENDING_H */
