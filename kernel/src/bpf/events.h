/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The records the BPF programs send to user space: the ABI between the
 * kernel side and the agent. kernel/src/abi.rs mirrors every struct and
 * constant here, and the build checks sizes, offsets and values match.
 *
 * Every record starts with struct mw_header; `kind` says what follows and
 * `size` how many bytes were sent (the path is sent only up to its length).
 * Plain fixed-width fields only, so both sides agree without packing rules,
 * and no implicit padding: every byte is a named field the kernel side sets
 * (padding is explicit `_padN`, zeroed), so no stale kernel memory is ever
 * sent. build.rs checks that each struct's size is the sum of its fields.
 */
#ifndef MAPWATCH_EVENTS_H
#define MAPWATCH_EVENTS_H

#ifndef __BPF__
#include <linux/types.h>
#endif

#define MW_COMM_LEN 16
/* Longest path we send; longer ones are cut at the front and flagged. */
#define MW_PATH_MAX 4096

/* mw_header.kind */
#define MW_EVENT_DO_MMAP 1
#define MW_EVENT_SECURITY_MMAP_FILE 2
#define MW_EVENT_PROCESS_EXIT 3 /* header only: lets the agent forget the process */
#define MW_EVENT_PROCESS_EXEC 4 /* header only: the process exec'd, its cached facts are stale */
#define MW_EVENT_SECURITY_FILE_MPROTECT 5 /* struct mw_security_file_mprotect (mprotect.h) */

/* mw_header.backend: which attach point produced the record. */
#define MW_BACKEND_SYSCALL_TRACEPOINT 1
#define MW_BACKEND_KPROBE 2
#define MW_BACKEND_FEXIT 3
#define MW_BACKEND_LSM 4
/* Not a kernel program: the agent's scan of /proc/PID/maps at start (MW_CALL_FOUND_AT_START). */
#define MW_BACKEND_PROC_MAPS 5

/* mw_file.flags */
#define MW_FILE_PRESENT (1U << 0)        /* the mapping is backed by a file */
#define MW_FILE_PATH_TRUNCATED (1U << 1) /* path too deep or too long: leading part missing */
#define MW_FILE_DELETED (1U << 2)        /* i_nlink == 0: unlinked file or memfd */
#define MW_FILE_OPEN_FOR_WRITE (1U << 3) /* some process has the file open for writing */
#define MW_FILE_DIR_WORLD_WRITABLE (1U << 4) /* its directory, or one above it, is writable by anyone (S_IWOTH) */
/*
 * Anonymous memory behind a file: a private mapping of /dev/zero (the kernel
 * maps anonymous memory), the shmem object of a shared anonymous mapping
 * (its pseudo file "dev/zero"), or a System V shared memory segment ("SYSV..."). Judged as anonymous memory, not as a file.
 */
#define MW_FILE_ANON_MEMORY (1U << 5)
/*
 * The path is relative to the task's root, which is not the root of its
 * mount tree: a chroot. `/usr/lib/x` there is not the host's /usr/lib/x.
 */
#define MW_FILE_PATH_CHROOT (1U << 6)

/*
 * mw_do_mmap.file_source / mw_security_mmap_file.file_source: where the file
 * facts of a record come from, or why a record that is not for anonymous
 * memory has none (then `file` is all zero and `path` empty).
 */
#define MW_FILE_SOURCE_NONE 0          /* anonymous memory: no file was asked for */
#define MW_FILE_SOURCE_ARGUMENT 1      /* the hooked function's file argument, held by the call */
#define MW_FILE_SOURCE_VMA 2           /* the VMA the call created, read under the mmap lock */
#define MW_FILE_SOURCE_CALL_FAILED 3   /* none: the call failed, nothing was mapped */
#define MW_FILE_SOURCE_VMA_BUSY 4      /* none: the mmap lock was taken (bpf_find_vma: -EBUSY) */
#define MW_FILE_SOURCE_VMA_MISSING 5   /* none: nothing mapped at the returned address any more */
#define MW_FILE_SOURCE_VMA_MISMATCH 6  /* none: the VMA there is not the one this call made */
#define MW_FILE_SOURCE_LOOKUP_FAILED 7 /* none: bpf_find_vma failed for another reason */

/* mw_do_mmap.call_flags / mw_security_mmap_file.call_flags */
#define MW_CALL_FD (1U << 0) /* `fd` holds mmap(2)'s fd argument (syscall_tracepoint, not MAP_ANONYMOUS) */
#define MW_CALL_EXEC (1U << 1) /* made by the ELF loader in execve, read at sched_process_exec (exec.h) */
/*
 * The kernel made the mapping executable though PROT_EXEC was not asked for:
 * personality(READ_IMPLIES_EXEC) with PROT_READ (not on a noexec mount). The
 * record's prot is what was asked; prot | PROT_EXEC is what the kernel applied.
 */
#define MW_CALL_IMPLIED_EXEC (1U << 2)
/*
 * The heap grown by brk(2) (addr, len: the new pages; prot PROT_READ|PROT_WRITE,
 * MAP_PRIVATE|MAP_ANONYMOUS). Reported only when the kernel makes the heap
 * executable (READ_IMPLIES_EXEC), with MW_CALL_IMPLIED_EXEC.
 */
#define MW_CALL_BRK (1U << 3)
/* A mapping that existed when the agent started, read from /proc/PID/maps by the agent (never the kernel). */
#define MW_CALL_FOUND_AT_START (1U << 4)
/* A System V shared memory segment attached by shmat(2) (syscall_tracepoint: shm.h). */
#define MW_CALL_SHMAT (1U << 5)

/* Indexes of the per-CPU counters in the mw_counters map. */
#define MW_COUNTER_DO_MMAP_SENT 0
#define MW_COUNTER_DO_MMAP_RINGBUF_FULL 1
#define MW_COUNTER_SECURITY_SENT 2
#define MW_COUNTER_SECURITY_RINGBUF_FULL 3
#define MW_COUNTER_PENDING_MAP_FULL 4 /* enter could not store its arguments: do_mmap lost */
#define MW_COUNTER_PENDING_MISSING 5  /* exit found no arguments (attached mid-call) */
#define MW_COUNTER_FILTERED 6         /* not reported: excluded by the configured filters */
#define MW_COUNTER_RATE_LIMITED 7     /* not reported: the process exceeded its rate limit */
#define MW_COUNTER_EXIT_SENT 8        /* process exits sent (not records: cache eviction) */
#define MW_COUNTER_EXIT_RINGBUF_FULL 9 /* process exits lost: the agent forgets by age instead */
/* Records sent without file facts because the VMA lookup failed (MW_FILE_SOURCE_VMA_*). */
#define MW_COUNTER_VMA_BUSY 10
#define MW_COUNTER_VMA_MISSING 11
#define MW_COUNTER_VMA_MISMATCH 12
#define MW_COUNTER_VMA_LOOKUP_FAILED 13
/* security_mmap_file lost: its entry could not store its arguments */
#define MW_COUNTER_SECURITY_PENDING_MAP_FULL 14
#define MW_COUNTER_EXEC_SENT 15         /* execs sent (not records: cache refresh) */
#define MW_COUNTER_EXEC_RINGBUF_FULL 16 /* execs lost: records keep the old executable until age-out */
/* 32-bit mprotect / pkey_mprotect seen on syscall_tracepoint, which reports none (compat.h) */
#define MW_COUNTER_COMPAT_MPROTECT_UNWATCHED 17
/* security_file_mprotect (mprotect.h) */
#define MW_COUNTER_MPROTECT_SENT 18
#define MW_COUNTER_MPROTECT_RINGBUF_FULL 19
#define MW_COUNTER_MPROTECT_PENDING_MAP_FULL 20 /* lost: its entry could not store its arguments */
/* W->X history (mprotect.h): a formerly writable range could not be remembered exactly */
#define MW_COUNTER_WX_HISTORY_FULL 21    /* no room for an address space, or for one of its users */
#define MW_COUNTER_WX_HISTORY_EVICTED 22 /* no free slot: two ranges merged (judged incomplete) */
/* Records lost: the per-CPU scratch buffer was not found (an array map always
 * has its element, so this is a bug, but never a silent one). */
#define MW_COUNTER_SCRATCH_MISSING 23
/* brk(2) growth of an executable heap (READ_IMPLIES_EXEC) lost: its entry could not store the old break */
#define MW_COUNTER_BRK_PENDING_MAP_FULL 24
#define MW_COUNTER_MAX 25

/*
 * Suspicious reasons, bit for bit the model's `Reasons`: enforcement
 * (enforce.h) decides on them in the kernel, from the facts the records carry.
 */
#define MW_REASON_WRITE_EXECUTE (1U << 0)
#define MW_REASON_EXECUTE_ANONYMOUS (1U << 1)
#define MW_REASON_EXECUTE_MEMFD (1U << 2)
#define MW_REASON_EXECUTE_DELETED_FILE (1U << 3)
#define MW_REASON_EXECUTE_FROM_WORLD_WRITABLE_DIR (1U << 4)
#define MW_REASON_EXECUTE_FILE_OPEN_FOR_WRITE (1U << 5)
#define MW_REASON_WRITE_THEN_EXECUTE (1U << 6)
#define MW_REASON_EXECUTE_THEN_WRITE (1U << 7)
/* An executable mapping whose facts could not be read (fail closed: checked by no rule). */
#define MW_REASON_EXECUTE_UNVERIFIED (1U << 8)
/* Made executable where the W->X history is incomplete (merged ranges, or no room for the process). */
#define MW_REASON_WRITE_HISTORY_INCOMPLETE (1U << 9)
#define MW_REASON_COUNT 10

/* What enforcement did about a permission check (mw_security_*.action). */
#define MW_ACTION_NONE 0
#define MW_ACTION_DENIED 1     /* the hook returned -EPERM */
#define MW_ACTION_WOULD_DENY 2 /* dry run: allowed, reported as if denied */
#define MW_ACTION_EXEMPT 3     /* a denied reason, spared: an exempt executable (counted only) */
#define MW_ACTION_COUNT 4

/* mw_enforce_settings.flags */
#define MW_ENFORCE_DRY_RUN (1U << 0)
#define MW_ENFORCE_SCOPE_CGROUPS (1U << 1) /* only tasks in (or below) a cgroup of mw_enforce_cgroups */
#define MW_ENFORCE_INCLUDE_INIT (1U << 2)  /* PID 1 may be denied too */
/* How many cgroup levels up a task's cgroup is matched against the scope. */
#define MW_ENFORCE_CGROUP_DEPTH 16

/* The single entry of mw_enforce_settings_map; all zero: nothing is enforced. */
struct mw_enforce_settings {
	__u32 deny;  /* MW_REASON_* whose mappings and protection changes are refused */
	__u32 flags; /* MW_ENFORCE_* */
};

/* An executable file spared by enforcement (mw_enforce_exempt), by identity. */
struct mw_exe_key {
	__u64 inode;
	__u32 dev; /* the kernel's encoding (major << 20 | minor) */
	__u32 _pad0;
};

/*
 * Filters (map mw_filter_settings, one entry; lists in hash maps), updated by
 * the agent at any time (config reload). A list marked "include" in `flags`
 * reports only its members; exclusions always apply.
 */
#define MW_FILTER_INCLUDE_PIDS (1U << 0)
#define MW_FILTER_INCLUDE_COMMS (1U << 1)
#define MW_FILTER_INCLUDE_UIDS (1U << 2)
#define MW_FILTER_INCLUDE_CGROUPS (1U << 3)
#define MW_FILTER_INCLUDE_PREFIXES (1U << 4)
#define MW_FILTER_FILE_ONLY (1U << 5) /* drop anonymous mappings */
#define MW_FILTER_ANON_ONLY (1U << 6) /* drop file-backed mappings */

/* Values in the list maps. */
#define MW_LIST_INCLUDE 1
#define MW_LIST_EXCLUDE 2

#define MW_PREFIX_MAX 8     /* path prefixes in mw_filter_prefixes */
#define MW_PREFIX_LEN 256   /* bytes of one prefix */

struct mw_filter_settings {
	__u32 flags;            /* MW_FILTER_* */
	__u32 rate_per_sec;     /* records per second per process; 0 = unlimited */
	__u64 prot_any;         /* report only when prot & prot_any != 0; 0 = all */
	__u32 rate_burst;       /* records a process may send at once */
	__u32 _pad0;
};

struct mw_path_prefix {
	__u32 len;              /* 0: unused slot */
	__u32 list;             /* MW_LIST_INCLUDE or MW_LIST_EXCLUDE */
	char bytes[MW_PREFIX_LEN];
};

struct mw_header {
	__u16 kind;
	__u16 backend;
	__u32 size;          /* bytes sent, header included */
	__u64 ktime_ns;      /* CLOCK_MONOTONIC when the kernel saw the event */
	__u32 tgid;          /* process id */
	__u32 tid;           /* thread id */
	__u32 ppid;          /* parent's process id */
	__u32 uid;           /* real user id */
	__u32 gid;           /* real group id */
	__u32 euid;          /* effective user id */
	__u32 egid;          /* effective group id */
	__u32 pid_ns;        /* pid namespace inode number */
	__u32 mnt_ns;        /* mount namespace inode number */
	__u32 exe_dev;       /* the executable's device (kernel dev_t) when the event happened; 0: unknown */
	__u64 cgroup_id;
	__u64 process_start_ns; /* the process's start (CLOCK_MONOTONIC): with tgid, a process identity */
	__u64 exe_inode;     /* the executable's inode when the event happened (mm->exe_file); 0: unknown */
	__u64 exe_ctime_ns;  /* its inode change time (ns since the epoch): with the inode, which file */
	char comm[MW_COMM_LEN];
};

/*
 * Records of one process lost to a full ring buffer (mw_lost_by_process,
 * keyed by tgid): who floods is named, not only how much was lost.
 */
struct mw_process_loss {
	__u64 lost;
	char comm[MW_COMM_LEN]; /* the thread that lost its first record */
};

struct mw_file {
	__u64 inode;
	__u64 ctime_ns;      /* inode change time, ns since the epoch */
	__u32 dev;           /* kernel dev_t: major << 20 | minor */
	__u32 open_flags;    /* file->f_flags (O_* of the open; no O_CLOEXEC) */
	__u16 mode;          /* i_mode: file type and permission bits */
	__u16 path_len;      /* bytes of path that follow, no NUL */
	__u32 flags;         /* MW_FILE_* */
};

struct mw_do_mmap {
	struct mw_header hdr;
	__u64 addr;          /* start of the new mapping (0 when error != 0) */
	__u64 len;
	__u64 prot;          /* PROT_* */
	__u64 mmap_flags;    /* MAP_* */
	__u64 pgoff;         /* file offset in pages */
	__u64 start_ns;      /* CLOCK_MONOTONIC at entry; hdr.ktime_ns is at return */
	__s32 error;         /* 0, or the negative errno mmap returned */
	__s32 fd;            /* mmap(2)'s fd argument when call_flags has MW_CALL_FD, else -1 */
	__u16 file_source;   /* MW_FILE_SOURCE_* */
	__u16 call_flags;    /* MW_CALL_* */
	__u32 _pad0;         /* zero */
	struct mw_file file; /* all zero unless file_source is ARGUMENT or VMA */
	char path[MW_PATH_MAX];
};

struct mw_security_mmap_file {
	struct mw_header hdr;
	__u64 prot;
	__u64 mmap_flags;
	__s32 verdict;       /* 0 or negative errno; meaningful only if has_verdict */
	__u32 has_verdict;   /* 1 when the backend sees the hook's result */
	__s32 fd;            /* as in mw_do_mmap */
	__u16 file_source;   /* MW_FILE_SOURCE_* */
	__u16 call_flags;    /* MW_CALL_* */
	__u32 enforced;      /* MW_REASON_* enforcement acted on (0 with MW_ACTION_NONE) */
	__u16 action;        /* MW_ACTION_* (lsm backend only) */
	__u16 _pad0;
	struct mw_file file; /* all zero unless file_source is ARGUMENT or VMA */
	char path[MW_PATH_MAX];
};

/* mw_security_file_mprotect.call_flags */
#define MW_MPROT_RANGE (1U << 0)        /* start/len hold the range the syscall asked for */
#define MW_MPROT_VMA (1U << 1)          /* vma_start/vma_end/prev_prot describe the VMA before */
#define MW_MPROT_PKEY_CALL (1U << 2)    /* the call was pkey_mprotect(2): pkey is its argument */
#define MW_MPROT_WAS_WRITABLE (1U << 3) /* (part of) the range was writable earlier (W->X history) */
/*
 * The W->X history cannot tell whether the range was writable: it overlaps a
 * range merged to make room (the merge also covers the gap between two
 * ranges), or the address space had no room in the history at all.
 */
#define MW_MPROT_HISTORY_INCOMPLETE (1U << 4)
/*
 * syscall_tracepoint: the range covers more than one VMA. prev_prot then has
 * PROT_WRITE if any of them was writable and PROT_EXEC only if all of them
 * were executable (vma_start/vma_end stay the first VMA's).
 */
#define MW_MPROT_SPAN (1U << 5)
#define MW_MPROT_SPAN_ANON (1U << 6)      /* a VMA after the first is anonymous memory */
#define MW_MPROT_SPAN_UNCHECKED (1U << 7) /* a VMA after the first could not be judged (another file, too many, lock busy) */

/*
 * A change of protection (mprotect(2), pkey_mprotect(2)): one record per
 * call (syscall_tracepoint) or per VMA the call changes (kernel backends:
 * the hook runs once per VMA in the range).
 */
struct mw_security_file_mprotect {
	struct mw_header hdr;
	__u64 start;         /* the range asked for (MW_MPROT_RANGE) */
	__u64 len;
	__u64 reqprot;       /* PROT_* asked for */
	__u64 prot;          /* PROT_* the kernel applies (READ_IMPLIES_EXEC may add PROT_EXEC) */
	__u64 vma_start;     /* the VMA at `start` before the change (MW_MPROT_VMA) */
	__u64 vma_end;
	__u64 prev_prot;     /* its VM_READ|VM_WRITE|VM_EXEC|VM_SHARED bits (same values as PROT_*) */
	__s32 pkey;          /* pkey_mprotect's key, -1 for mprotect */
	__s32 result;        /* 0 or negative errno: syscall result / hook verdict (has_result) */
	__u32 has_result;    /* 1 always today; kept explicit like security_mmap_file */
	__u16 file_source;   /* MW_FILE_SOURCE_* (VMA: the VMA's file, read under the mmap lock) */
	__u16 call_flags;    /* MW_MPROT_* */
	__u32 enforced;      /* MW_REASON_* enforcement acted on (0 with MW_ACTION_NONE) */
	__u16 action;        /* MW_ACTION_* (lsm backend only) */
	__u16 _pad0;
	struct mw_file file; /* the VMA's file; all zero unless file_source is ARGUMENT or VMA */
	char path[MW_PATH_MAX];
};

#endif /* MAPWATCH_EVENTS_H */
