/* SPDX-License-Identifier: GPL-2.0 */
/* Maps, load-time settings, the record header and the one output path. */
#ifndef MAPWATCH_COMMON_H
#define MAPWATCH_COMMON_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "events.h"

#define MW_MAP_ANONYMOUS 0x20
#define MW_PENDING_ENTRIES 8192 /* threads inside one hooked call at the same time */
#define MW_PAGE_SHIFT 12
#define MW_MAX_ERRNO 4095

/*
 * Set by the agent before load (.rodata: the verifier sees them as constants).
 * Which event each program serves is decided by attaching it or not.
 */
/* The agent's own process: its mappings would feed back into its own output. */
volatile const __u32 mw_config_ignore_tgid = 0;
/* do_mmap's parameter count on this kernel (from its BTF): 9 since 6.5 added vm_flags, 8 before. */
volatile const __u32 mw_config_do_mmap_nargs = 9;

/* Records to user space. The agent sets the size from its config. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} mw_events SEC(".maps");

/* Every record sent and every record lost, by reason (MW_COUNTER_*). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MW_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} mw_counters SEC(".maps");

/*
 * Per-CPU workspace: a record is built here, then copied into the ring buffer
 * with only as many path bytes as it has. The path is assembled back to front
 * in `path_buf` (see file.h); its second half is slack so a masked write of a
 * full name can never leave the buffer.
 */
struct mw_scratch {
	union {
		struct mw_do_mmap do_mmap;
		struct mw_security_mmap_file security;
	};
	char path_buf[MW_PATH_MAX * 2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mw_scratch);
} mw_scratch_map SEC(".maps");

static __always_inline struct mw_scratch *mw_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&mw_scratch_map, &zero);
}

static __always_inline void mw_count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&mw_counters, &counter);
	if (value)
		*value += 1; /* per-CPU slot: no other writer */
}

/* Keeps clang from folding a bound check into the mask the verifier needs. */
#define mw_barrier_var(var) asm volatile("" : "+r"(var))

/* An address or a negative errno, as kernel functions returning unsigned long do. */
static __always_inline bool mw_is_err_value(__u64 ret)
{
	return ret >= (__u64)-MW_MAX_ERRNO;
}

#define MW_PROT_READ 0x1ULL
#define MW_PROT_WRITE 0x2ULL
#define MW_PROT_EXEC 0x4ULL
#define MW_VM_EXEC 0x4ULL     /* vm_flags: same value as PROT_EXEC */
#define MW_VM_MAYEXEC 0x40ULL /* vm_flags: may be made executable (not from a noexec mount) */
#define MW_READ_IMPLIES_EXEC 0x0400000 /* personality flag */

/*
 * Whether the kernel adds PROT_EXEC to a PROT_READ mapping or protection of
 * the current task: personality(READ_IMPLIES_EXEC), set by the task itself or
 * by exec of a 32-bit program without PT_GNU_STACK. A thread's personality
 * changes only by its own calls, so reading it at entry or return is the same.
 */
static __always_inline bool mw_read_implies_exec(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, personality) & MW_READ_IMPLIES_EXEC;
}

static __always_inline bool mw_ignored(__u64 pid_tgid)
{
	return mw_config_ignore_tgid != 0 && (__u32)(pid_tgid >> 32) == mw_config_ignore_tgid;
}

/* Inode change time in ns since the epoch, for every known inode layout. */
static __always_inline __u64 mw_inode_ctime_ns(struct inode *inode)
{
	if (bpf_core_field_exists(struct inode___ctime_split, i_ctime_sec)) {
		struct inode___ctime_split *i = (void *)inode;
		__u64 sec = BPF_CORE_READ(i, i_ctime_sec);
		/* 6.13+: bit 31 marks "ctime was queried" (fine-grained timestamps). */
		__u32 nsec = BPF_CORE_READ(i, i_ctime_nsec) & ~(1U << 31);
		return sec * 1000000000ULL + nsec;
	}
	if (bpf_core_field_exists(struct inode___ctime_private, __i_ctime)) {
		struct inode___ctime_private *i = (void *)inode;
		return BPF_CORE_READ(i, __i_ctime.tv_sec) * 1000000000ULL +
		       BPF_CORE_READ(i, __i_ctime.tv_nsec);
	}
	struct inode___ctime_public *i = (void *)inode;
	return BPF_CORE_READ(i, i_ctime.tv_sec) * 1000000000ULL + BPF_CORE_READ(i, i_ctime.tv_nsec);
}

static __always_inline void mw_fill_header(struct mw_header *hdr, __u16 kind, __u16 backend,
					   __u64 pid_tgid)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 uid_gid = bpf_get_current_uid_gid();

	hdr->kind = kind;
	hdr->backend = backend;
	hdr->size = 0;
	hdr->ktime_ns = bpf_ktime_get_ns();
	hdr->tgid = pid_tgid >> 32;
	hdr->tid = (__u32)pid_tgid;
	hdr->ppid = BPF_CORE_READ(task, real_parent, tgid);
	hdr->uid = (__u32)uid_gid;
	hdr->gid = uid_gid >> 32;
	/* kuid_t values in the initial user namespace, as the helper above returns. */
	hdr->euid = BPF_CORE_READ(task, cred, euid.val);
	hdr->egid = BPF_CORE_READ(task, cred, egid.val);
	hdr->pid_ns = BPF_CORE_READ(task, nsproxy, pid_ns_for_children, ns.inum);
	hdr->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	hdr->cgroup_id = bpf_get_current_cgroup_id();
	hdr->process_start_ns = BPF_CORE_READ(task, group_leader, start_time);
	/*
	 * Which executable the process ran at the event: the agent reads its
	 * path from /proc later, maybe after an execve, and trusts that path
	 * (exceptions) only for a process still running this file (inode and
	 * change time; the device stat shows may differ: btrfs, overlayfs).
	 */
	struct inode *exe = BPF_CORE_READ(task, mm, exe_file, f_inode);
	hdr->exe_inode = exe ? BPF_CORE_READ(exe, i_ino) : 0;
	hdr->exe_dev = exe ? BPF_CORE_READ(exe, i_sb, s_dev) : 0;
	hdr->exe_ctime_ns = exe ? mw_inode_ctime_ns(exe) : 0;
	if (bpf_get_current_comm(hdr->comm, sizeof(hdr->comm)))
		__builtin_memset(hdr->comm, 0, sizeof(hdr->comm));
}

/*
 * The ring buffer keeps its last 1/2^MW_RESERVE_SHIFT for priority records:
 * records of executable memory (the protection the kernel applied has
 * PROT_EXEC), the only ones a suspicious reason can be about. Other records
 * are dropped (counted as ring buffer full) once the buffer holds more than
 * the rest, so a flood of ordinary calls, failing mmaps say, cannot push an
 * executable mapping out.
 */
#define MW_RESERVE_SHIFT 3

/* Records lost to a full ring buffer, per process (the agent names the top ones). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tgid */
	__type(value, struct mw_process_loss);
} mw_lost_by_process SEC(".maps");

static __always_inline void mw_count_process_loss(struct mw_header *hdr)
{
	struct mw_process_loss *loss = bpf_map_lookup_elem(&mw_lost_by_process, &hdr->tgid);
	struct mw_process_loss first = { .lost = 1 };

	if (loss) {
		__sync_fetch_and_add(&loss->lost, 1);
		return;
	}
	__builtin_memcpy(first.comm, hdr->comm, sizeof(first.comm));
	/* Another CPU may insert first: then this one loss goes unnamed (still counted). */
	bpf_map_update_elem(&mw_lost_by_process, &hdr->tgid, &first, BPF_NOEXIST);
}

/* Whether `size` more bytes of an ordinary record fit before the reserve. */
static __always_inline bool mw_ring_has_room(__u32 size)
{
	__u64 ring = bpf_ringbuf_query(&mw_events, BPF_RB_RING_SIZE);
	__u64 used = bpf_ringbuf_query(&mw_events, BPF_RB_AVAIL_DATA);

	return used + size + 8 <= ring - (ring >> MW_RESERVE_SHIFT);
}

/*
 * Sends `record` with `path_len` path bytes after its fixed part at
 * `fixed_size`, and counts the result: sent, or lost because the ring buffer
 * was full (for an ordinary record: all but the reserve, see above).
 */
static __always_inline void mw_output(void *record, struct mw_header *hdr, __u32 fixed_size,
				      __u32 path_len, __u32 sent_counter, __u32 full_counter,
				      bool priority)
{
	__u32 size;

	mw_barrier_var(path_len);
	path_len &= MW_PATH_MAX - 1;
	size = fixed_size + path_len;
	hdr->size = size;
	if ((!priority && !mw_ring_has_room(size)) ||
	    bpf_ringbuf_output(&mw_events, record, size, 0)) {
		mw_count(full_counter);
		mw_count_process_loss(hdr);
	} else
		mw_count(sent_counter);
}

#endif /* MAPWATCH_COMMON_H */
