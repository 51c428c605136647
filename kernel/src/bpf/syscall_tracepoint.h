/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Backend "syscall_tracepoint": sys_enter_mmap / sys_exit_mmap. Loads on any
 * kernel with syscall tracepoints. It sees mmap(2) calls only: mappings the
 * kernel makes itself (the ELF loader at execve, shmat) never pass here.
 *
 * Enter: resolve the fd to its struct file, emit security_mmap_file (the
 * permission check runs before the mapping is made; its verdict is not
 * visible here) and keep the arguments for the exit. Exit: emit do_mmap with
 * the address or errno the call returned.
 */
#ifndef MAPWATCH_SYSCALL_TRACEPOINT_H
#define MAPWATCH_SYSCALL_TRACEPOINT_H

#include "file.h"

/* What sys_enter_mmap hands to sys_exit_mmap, per thread. */
struct mw_pending_mmap {
	__u64 len;
	__u64 prot;
	__u64 mmap_flags;
	__u64 pgoff;
	__u64 start_ns;
	struct file *file; /* held by the syscall until it returns */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct mw_pending_mmap);
} mw_pending_mmaps SEC(".maps");

static __always_inline void mw_tp_emit_security(struct mw_pending_mmap *args, __u64 pid_tgid)
{
	struct mw_scratch *s = mw_scratch();
	struct mw_security_mmap_file *ev;

	if (!s)
		return;
	ev = &s->security;
	mw_fill_header(&ev->hdr, MW_EVENT_SECURITY_MMAP_FILE, MW_BACKEND_SYSCALL_TRACEPOINT,
		       pid_tgid);
	ev->prot = args->prot;
	ev->mmap_flags = args->mmap_flags;
	ev->verdict = 0;
	ev->has_verdict = 0;
	mw_file_info(args->file, &ev->file, s->path_buf, ev->path);
	mw_output(ev, &ev->hdr, __builtin_offsetof(struct mw_security_mmap_file, path),
		  ev->file.path_len, MW_COUNTER_SECURITY_SENT, MW_COUNTER_SECURITY_RINGBUF_FULL);
}

static __always_inline int mw_tp_enter_mmap(struct mw_sys_enter_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_pending_mmap args = {};

	if (mw_ignored(pid_tgid))
		return 0;
	args.len = ctx->args[1];
	args.prot = ctx->args[2];
	args.mmap_flags = ctx->args[3];
	args.pgoff = ctx->args[5] >> MW_PAGE_SHIFT;
	args.start_ns = bpf_ktime_get_ns();
	/* The fd arrives zero-extended from 32 bits; the kernel ignores it for anonymous maps. */
	if (!(args.mmap_flags & MW_MAP_ANONYMOUS))
		args.file = mw_fd_file((int)ctx->args[4]);

	if (mw_config_events & MW_WANT_SECURITY_MMAP_FILE)
		mw_tp_emit_security(&args, pid_tgid);
	if ((mw_config_events & MW_WANT_DO_MMAP) &&
	    bpf_map_update_elem(&mw_pending_mmaps, &pid_tgid, &args, BPF_ANY))
		mw_count(MW_COUNTER_PENDING_MAP_FULL);
	return 0;
}

static __always_inline int mw_tp_exit_mmap(struct mw_sys_exit_ctx *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_pending_mmap *args;
	struct mw_scratch *s;
	struct mw_do_mmap *ev;
	long ret = ctx->ret;

	if (mw_ignored(pid_tgid) || !(mw_config_events & MW_WANT_DO_MMAP))
		return 0;
	args = bpf_map_lookup_elem(&mw_pending_mmaps, &pid_tgid);
	if (!args) {
		mw_count(MW_COUNTER_PENDING_MISSING);
		return 0;
	}
	s = mw_scratch();
	if (!s)
		goto out;
	ev = &s->do_mmap;
	mw_fill_header(&ev->hdr, MW_EVENT_DO_MMAP, MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid);
	if (ret < 0 && ret >= -MW_MAX_ERRNO) {
		ev->addr = 0;
		ev->error = (__s32)ret;
	} else {
		ev->addr = (__u64)ret;
		ev->error = 0;
	}
	ev->len = args->len;
	ev->prot = args->prot;
	ev->mmap_flags = args->mmap_flags;
	ev->pgoff = args->pgoff;
	ev->start_ns = args->start_ns;
	ev->_pad0 = 0;
	mw_file_info(args->file, &ev->file, s->path_buf, ev->path);
	mw_output(ev, &ev->hdr, __builtin_offsetof(struct mw_do_mmap, path), ev->file.path_len,
		  MW_COUNTER_DO_MMAP_SENT, MW_COUNTER_DO_MMAP_RINGBUF_FULL);
out:
	bpf_map_delete_elem(&mw_pending_mmaps, &pid_tgid);
	return 0;
}

#endif /* MAPWATCH_SYSCALL_TRACEPOINT_H */
