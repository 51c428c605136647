/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What not to report, decided in the kernel before a record is built or sent:
 * include/exclude lists (pid, comm, uid, cgroup, path prefix), a protection
 * mask, file-backed vs anonymous, and a per-process rate limit. Everything is
 * in maps the agent can rewrite while running.
 */
#ifndef MAPWATCH_FILTER_H
#define MAPWATCH_FILTER_H

#include "file.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mw_filter_settings);
} mw_filter_settings_map SEC(".maps");

#define MW_LIST_MAP(name, key_type, entries)                                                    \
	struct {                                                                                 \
		__uint(type, BPF_MAP_TYPE_HASH);                                                 \
		__uint(max_entries, entries);                                                    \
		__type(key, key_type);                                                           \
		__type(value, __u8); /* MW_LIST_INCLUDE / MW_LIST_EXCLUDE */                    \
	} name SEC(".maps")

struct mw_comm_key {
	char comm[MW_COMM_LEN];
};

MW_LIST_MAP(mw_filter_pids, __u32, 1024);
MW_LIST_MAP(mw_filter_comms, struct mw_comm_key, 256);
MW_LIST_MAP(mw_filter_uids, __u32, 256);
MW_LIST_MAP(mw_filter_cgroups, __u64, 1024);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MW_PREFIX_MAX);
	__type(key, __u32);
	__type(value, struct mw_path_prefix);
} mw_filter_prefixes SEC(".maps");

/*
 * Per-process rate limit state: the earliest time the next record is due
 * (GCRA). A plain hash (see MW_PENDING_MAP for why not an LRU), emptied at
 * process exit; when full, new processes go unlimited rather than unseen.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tgid */
	__type(value, __u64);
} mw_rate_state SEC(".maps");

static __always_inline struct mw_filter_settings *mw_filter_settings(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&mw_filter_settings_map, &zero);
}

/* 0 = not listed, else the list value. */
static __always_inline __u8 mw_listed(void *map, const void *key)
{
	__u8 *value = bpf_map_lookup_elem(map, key);
	return value ? *value : 0;
}

/* Whether a key passes one list: excluded never; included-only lists need membership. */
static __always_inline bool mw_list_passes(void *map, const void *key, bool include_only)
{
	__u8 listed = mw_listed(map, key);

	if (listed == MW_LIST_EXCLUDE)
		return false;
	return !include_only || listed == MW_LIST_INCLUDE;
}

/*
 * The checks that need no path: who made the call, its protection, and
 * whether a file is behind it. Counts what it drops.
 */
static __always_inline bool mw_filter_task(__u64 pid_tgid, __u64 prot, bool file_backed)
{
	struct mw_filter_settings *f = mw_filter_settings();
	struct mw_comm_key comm = {};
	__u32 tgid = pid_tgid >> 32;
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	__u64 cgroup = bpf_get_current_cgroup_id();

	if (!f)
		return true;
	if ((f->prot_any && !(prot & f->prot_any)) ||
	    ((f->flags & MW_FILTER_FILE_ONLY) && !file_backed) ||
	    ((f->flags & MW_FILTER_ANON_ONLY) && file_backed))
		goto drop;
	if (!mw_list_passes(&mw_filter_pids, &tgid, f->flags & MW_FILTER_INCLUDE_PIDS) ||
	    !mw_list_passes(&mw_filter_uids, &uid, f->flags & MW_FILTER_INCLUDE_UIDS) ||
	    !mw_list_passes(&mw_filter_cgroups, &cgroup, f->flags & MW_FILTER_INCLUDE_CGROUPS))
		goto drop;
	bpf_get_current_comm(comm.comm, sizeof(comm.comm));
	if (!mw_list_passes(&mw_filter_comms, &comm, f->flags & MW_FILTER_INCLUDE_COMMS))
		goto drop;
	return true;
drop:
	mw_count(MW_COUNTER_FILTERED);
	return false;
}

struct mw_prefix_match {
	const char *path;
	__u32 path_len;
	__u32 verdict; /* list of the deciding prefix, 0 if none matched */
	bool matched;
	struct mw_path_prefix *prefix;
};

static long mw_prefix_byte(__u32 i, struct mw_prefix_match *m)
{
	__u32 at = i & (MW_PREFIX_LEN - 1);
	char a, b;

	if (i >= m->prefix->len || i >= MW_PREFIX_LEN) {
		m->matched = true;
		return 1;
	}
	if (i >= m->path_len)
		return 1;
	b = m->prefix->bytes[at];
	if (bpf_probe_read_kernel(&a, 1, m->path + (i & (MW_PATH_MAX - 1))) || a != b)
		return 1;
	return 0;
}

/*
 * Result of the path-prefix lists for a built path: excluded if it starts
 * with an exclude prefix; with include prefixes set, included only if it
 * starts with one of them.
 */
static long mw_prefix_slot(__u32 slot, struct mw_prefix_match *m)
{
	struct mw_path_prefix *prefix = bpf_map_lookup_elem(&mw_filter_prefixes, &slot);

	if (!prefix || prefix->len == 0)
		return 0;
	m->prefix = prefix;
	m->matched = false;
	bpf_loop(MW_PREFIX_LEN + 1, mw_prefix_byte, m, 0);
	if (m->matched) {
		m->verdict = prefix->list;
		if (prefix->list == MW_LIST_EXCLUDE)
			return 1; /* an exclusion decides */
	}
	return 0;
}

/*
 * Whether a record with this built path passes the prefix lists (1) or is
 * filtered out (0, counted); `file_flags` are its MW_FILE_*. Global: verified
 * once per program. A path that does not say where the file is (cut at the
 * front, or seen from inside a chroot, where "/usr/lib/x" can be anything)
 * is never matched: the lists let it pass, as a record without a file.
 */
__noinline int mw_path_passes(const struct mw_path_text *path, __u32 path_len, __u32 file_flags)
{
	struct mw_filter_settings *f = mw_filter_settings();
	struct mw_prefix_match m = { .path_len = path_len };

	if (!f || !path || !(file_flags & MW_FILE_PRESENT) ||
	    (file_flags & (MW_FILE_PATH_TRUNCATED | MW_FILE_PATH_CHROOT)))
		return 1;
	m.path = path->bytes;
	bpf_loop(MW_PREFIX_MAX, mw_prefix_slot, &m, 0);
	if (m.verdict == MW_LIST_EXCLUDE ||
	    ((f->flags & MW_FILTER_INCLUDE_PREFIXES) && m.verdict != MW_LIST_INCLUDE)) {
		mw_count(MW_COUNTER_FILTERED);
		return 0;
	}
	return 1;
}

static __always_inline bool mw_filter_path(const char *path, __u32 path_len, __u32 file_flags)
{
	return mw_path_passes((const struct mw_path_text *)path, path_len, file_flags);
}

/*
 * Per-process rate limit (generic cell rate algorithm): a record is allowed
 * when now >= tat - burst * interval; then tat advances by one interval.
 * Threads of one process on several CPUs may race on the update: the limit
 * is approximate, never a reason to stall a hook.
 */
static __always_inline bool mw_rate_allows(__u64 pid_tgid, bool priority)
{
	struct mw_filter_settings *f = mw_filter_settings();
	__u32 tgid = pid_tgid >> 32;
	__u64 now, interval, tolerance, tat, *state;

	/* Executable memory is never rate limited: the limit is for volume, not for alerts. */
	if (priority || !f || f->rate_per_sec == 0)
		return true;
	now = bpf_ktime_get_ns();
	interval = 1000000000ULL / f->rate_per_sec;
	tolerance = interval * f->rate_burst;
	state = bpf_map_lookup_elem(&mw_rate_state, &tgid);
	tat = state ? *state : now;
	if (tat < now)
		tat = now;
	if (tat > now + tolerance) {
		mw_count(MW_COUNTER_RATE_LIMITED);
		return false;
	}
	tat += interval;
	if (state)
		*state = tat;
	else
		bpf_map_update_elem(&mw_rate_state, &tgid, &tat, BPF_ANY);
	return true;
}

/* The process ended: its rate state goes. */
static __always_inline void mw_forget_process(__u32 tgid)
{
	bpf_map_delete_elem(&mw_rate_state, &tgid);
}

#endif /* MAPWATCH_FILTER_H */
