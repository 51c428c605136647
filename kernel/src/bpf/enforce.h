/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Opt-in enforcement: the lsm programs of security_mmap_file and
 * security_file_mprotect refuse (-EPERM) a mapping or a protection change
 * whose suspicious reasons the agent marked "deny".
 *
 * The reasons are computed here from the same facts the records carry (the
 * model computes the reported ones in user space; both follow the same
 * rules, see model/src/record.rs), before the call takes effect: an mprotect
 * is judged as if it succeeds. Decisions are independent of the reporting
 * filters and the rate limit: a process that is not reported is still
 * enforced on. Never enforced: the agent (mw_ignored, checked by the
 * callers), PID 1 unless MW_ENFORCE_INCLUDE_INIT, tasks outside the cgroup
 * scope, and exempt executables (by file identity, not by name).
 */
#ifndef MAPWATCH_ENFORCE_H
#define MAPWATCH_ENFORCE_H

#include "common.h"

#define MW_EPERM 1
#define MW_PROT_W 0x2
#define MW_PROT_X 0x4

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mw_enforce_settings);
} mw_enforce_settings_map SEC(".maps");

/* Cgroup v2 ids the enforcement is scoped to (MW_ENFORCE_SCOPE_CGROUPS): the task or an ancestor. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} mw_enforce_cgroups SEC(".maps");

/* Executables never denied, by file identity (the process's exe, not its name). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct mw_exe_key);
	__type(value, __u8);
} mw_enforce_exempt SEC(".maps");

/* Decisions by reason and action: index reason_bit * MW_ACTION_COUNT + action. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MW_REASON_COUNT * MW_ACTION_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} mw_enforce_counts SEC(".maps");

struct mm_struct___mw_enforce {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct task_struct___mw_enforce {
	struct mm_struct___mw_enforce *mm;
} __attribute__((preserve_access_index));

/*
 * The reasons an executable mapping of `file` has (model: `classify`), from
 * the facts its record carries (mw_file_risk_flags): a memfd (an unlinked
 * pseudo file named "memfd:", as its path "/memfd:..." tells the model), another
 * deleted file, a file in a world-writable directory, a file open for writing.
 */
__noinline int mw_reasons_exec_file_of(__u64 file_addr)
{
	struct file *file = (struct file *)file_addr;
	__u32 flags = mw_file_risk_flags(file, BPF_CORE_READ(file, f_inode));
	__u32 r = 0;

	if (mw_ancestor_world_writable(file))
		flags |= MW_FILE_DIR_WORLD_WRITABLE;

	if (flags & MW_FILE_ANON_MEMORY)
		return MW_REASON_EXECUTE_ANONYMOUS; /* /dev/zero, shared anonymous memory */
	if (flags & MW_FILE_DELETED) {
		struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
		char name[6] = {};

		bpf_probe_read_kernel(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name));
		if (BPF_CORE_READ(dentry, d_parent) == dentry && name[0] == 'm' && name[1] == 'e' &&
		    name[2] == 'm' && name[3] == 'f' && name[4] == 'd' && name[5] == ':')
			r |= MW_REASON_EXECUTE_MEMFD;
		else
			r |= MW_REASON_EXECUTE_DELETED_FILE;
	}
	if (flags & MW_FILE_DIR_WORLD_WRITABLE)
		r |= MW_REASON_EXECUTE_FROM_WORLD_WRITABLE_DIR;
	if (flags & MW_FILE_OPEN_FOR_WRITE)
		r |= MW_REASON_EXECUTE_FILE_OPEN_FOR_WRITE;
	return r;
}

/* Global above (verified once per program: the ancestor walk is in it). */
static __always_inline __u32 mw_reasons_exec_file(struct file *file)
{
	return mw_reasons_exec_file_of((__u64)file);
}

/* A new mapping of `file` (NULL: anonymous memory) with protection `prot`. */
static __always_inline __u32 mw_reasons_mmap(struct file *file, __u64 prot)
{
	__u32 r = 0;

	if ((prot & (MW_PROT_W | MW_PROT_X)) == (MW_PROT_W | MW_PROT_X))
		r |= MW_REASON_WRITE_EXECUTE;
	if (!(prot & MW_PROT_X))
		return r;
	if (!file)
		return r | MW_REASON_EXECUTE_ANONYMOUS;
	return r | mw_reasons_exec_file(file);
}

/*
 * A change of a VMA of `file` (NULL: anonymous) from `prev` (VM_* = PROT_*
 * bits) to `reqprot` (the protection the kernel applies); `was_writable`: the
 * W->X history, or its incompleteness (model: `classify_mprotect`, for a call
 * that succeeds).
 */
static __always_inline __u32 mw_reasons_mprotect(struct file *file, __u64 reqprot, __u64 prev,
						 __u16 history)
{
	bool was_writable = history & MW_MPROT_WAS_WRITABLE;

	__u64 wx = MW_PROT_W | MW_PROT_X;
	__u32 r = 0;

	if ((reqprot & wx) == wx)
		r |= MW_REASON_WRITE_EXECUTE;
	if (!(reqprot & MW_PROT_X))
		return r;
	if (!(reqprot & MW_PROT_W) && ((prev & MW_PROT_W) || was_writable))
		r |= MW_REASON_WRITE_THEN_EXECUTE;
	if ((reqprot & wx) == wx && (prev & wx) == MW_PROT_X)
		r |= MW_REASON_EXECUTE_THEN_WRITE;
	if (!(reqprot & MW_PROT_W) && !(prev & MW_PROT_X) && (history & MW_MPROT_HISTORY_INCOMPLETE))
		r |= MW_REASON_WRITE_HISTORY_INCOMPLETE;
	if (!(prev & MW_PROT_X))
		r |= mw_reasons_mmap(file, MW_PROT_X);
	return r;
}

/* Whether the current task's cgroup, or one above it, is in the scope. */
static __always_inline bool mw_enforce_in_cgroup_scope(void)
{
	__u64 id = bpf_get_current_cgroup_id();

	if (bpf_map_lookup_elem(&mw_enforce_cgroups, &id))
		return true;
#pragma unroll
	for (int level = 0; level < MW_ENFORCE_CGROUP_DEPTH; level++) {
		id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id)
			return false;
		if (bpf_map_lookup_elem(&mw_enforce_cgroups, &id))
			return true;
	}
	return false;
}

/* Whether the current process runs an exempt executable. */
static __always_inline bool mw_enforce_exempt_exe(void)
{
	struct task_struct___mw_enforce *task = (void *)bpf_get_current_task();
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	struct inode *inode;
	struct mw_exe_key key = {};

	if (!exe)
		return false;
	inode = BPF_CORE_READ(exe, f_inode);
	if (!inode)
		return false;
	key.inode = BPF_CORE_READ(inode, i_ino);
	key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	return bpf_map_lookup_elem(&mw_enforce_exempt, &key) != NULL;
}

static __always_inline void mw_enforce_count(__u32 reasons, __u16 action)
{
#pragma unroll
	for (__u32 bit = 0; bit < MW_REASON_COUNT; bit++) {
		__u32 index = bit * MW_ACTION_COUNT + action;
		__u64 *value;

		if (!(reasons & (1U << bit)))
			continue;
		value = bpf_map_lookup_elem(&mw_enforce_counts, &index);
		if (value)
			*value += 1; /* per-CPU slot: no other writer */
	}
}

/* Whether any reason is denied: without enforcement no reason is computed. */
static __always_inline bool mw_enforcing(void)
{
	__u32 zero = 0;
	struct mw_enforce_settings *s = bpf_map_lookup_elem(&mw_enforce_settings_map, &zero);

	return s && s->deny;
}

/*
 * The action for a call with `reasons` by the current task (not the agent:
 * callers return before); `*enforced` gets the reasons acted on.
 */
static __always_inline __u16 mw_enforce_decide(__u64 pid_tgid, __u32 reasons, __u32 *enforced)
{
	__u32 zero = 0;
	struct mw_enforce_settings *s = bpf_map_lookup_elem(&mw_enforce_settings_map, &zero);
	__u32 denied;
	__u16 action;

	*enforced = 0;
	if (!s)
		return MW_ACTION_NONE;
	denied = reasons & s->deny;
	if (!denied)
		return MW_ACTION_NONE;
	if ((pid_tgid >> 32) == 1 && !(s->flags & MW_ENFORCE_INCLUDE_INIT))
		return MW_ACTION_NONE;
	if ((s->flags & MW_ENFORCE_SCOPE_CGROUPS) && !mw_enforce_in_cgroup_scope())
		return MW_ACTION_NONE;
	if (mw_enforce_exempt_exe())
		action = MW_ACTION_EXEMPT;
	else if (s->flags & MW_ENFORCE_DRY_RUN)
		action = MW_ACTION_WOULD_DENY;
	else
		action = MW_ACTION_DENIED;
	mw_enforce_count(denied, action);
	*enforced = denied;
	return action;
}

/* The hook's return: -EPERM for a denial, unless an LSM before us refused already. */
static __always_inline int mw_enforce_verdict(int ret, __u16 action)
{
	return (action == MW_ACTION_DENIED && ret == 0) ? -MW_EPERM : ret;
}

#endif /* MAPWATCH_ENFORCE_H */
