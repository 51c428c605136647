/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Building and sending the two records. Every backend ends here, so every
 * record has the same fields whatever attach point saw the event.
 */
#ifndef MAPWATCH_EMIT_H
#define MAPWATCH_EMIT_H

#include "vma.h"
#include "filter.h"
#include "pending.h"

/*
 * The file facts of `call` into `info` / `out`, from where this backend can
 * read them race-free; returns the MW_FILE_SOURCE_* that says where (or why
 * there are none):
 *   - kernel backends: the hooked function's own file argument, which the
 *     call holds until it returns;
 *   - syscall_tracepoint: nothing for MAP_ANONYMOUS; for a failed call no
 *     file at all (nothing was mapped, and the fd's file is not held: the fd
 *     number goes out instead); for a successful one the VMA it created.
 * `ret` is the call's result for do_mmap; security_mmap_file on
 * syscall_tracepoint passes the syscall's result too.
 */
static __always_inline __u16 mw_file_facts(__u16 backend, struct mw_call *call, __u64 ret,
					   struct mw_file *info, char *buf, char *out, __s64 *vm_flags)
{
	*vm_flags = -1;
	if (backend != MW_BACKEND_SYSCALL_TRACEPOINT) {
		mw_file_info(call->file, info, buf, out);
		return call->file ? MW_FILE_SOURCE_ARGUMENT : MW_FILE_SOURCE_NONE;
	}
	__builtin_memset(info, 0, sizeof(*info));
	if (call->mmap_flags & MW_MAP_ANONYMOUS)
		return MW_FILE_SOURCE_NONE;
	if (mw_is_err_value(ret))
		return MW_FILE_SOURCE_CALL_FAILED;
	return mw_vma_file(ret, call->pgoff, info, buf, out, vm_flags);
}

/*
 * Whether the kernel made (or would make) the mapping executable though
 * PROT_EXEC was not asked for: the VMA's own flags when this call's VMA was
 * read, else the kernel's rule (do_mmap, mmap_prot): PROT_READ under
 * READ_IMPLIES_EXEC, unless the file is on a noexec mount. A file whose
 * mount cannot be read here (syscall_tracepoint, VMA not read) is judged
 * executable: fail closed.
 */
static __always_inline bool mw_mmap_implied_exec(__u16 backend, struct mw_call *call, __u16 source,
						 __s64 vm_flags)
{
	if ((call->prot & (MW_PROT_READ | MW_PROT_EXEC)) != MW_PROT_READ)
		return false;
	if (source == MW_FILE_SOURCE_VMA && vm_flags >= 0)
		return vm_flags & MW_VM_EXEC;
	if (!mw_read_implies_exec())
		return false;
	if (backend != MW_BACKEND_SYSCALL_TRACEPOINT && call->file)
		return !mw_file_noexec(call->file);
	return true;
}

/*
 * Adds the call's own flags (brk) and MW_CALL_IMPLIED_EXEC to a record's
 * `call_flags`; returns whether the record is of executable memory (a
 * priority record: the ring buffer's reserve, no rate limit).
 */
static __always_inline bool mw_exec_flags(__u16 backend, struct mw_call *call, __u16 source,
					  __s64 vm_flags, __u16 *call_flags)
{
	*call_flags |= call->call_flags;
	if (mw_mmap_implied_exec(backend, call, source, vm_flags))
		*call_flags |= MW_CALL_IMPLIED_EXEC;
	return (call->prot & MW_PROT_EXEC) || (*call_flags & MW_CALL_IMPLIED_EXEC);
}

/* The protection for the filters: what was asked, plus PROT_EXEC where the kernel's rule adds it. */
static __always_inline __u64 mw_filter_prot(struct mw_call *call)
{
	if ((call->prot & MW_PROT_READ) && mw_read_implies_exec())
		return call->prot | MW_PROT_EXEC;
	return call->prot;
}

/* Whether the call asked for a file (for the file-only / anonymous-only filters). */
static __always_inline bool mw_call_file_backed(__u16 backend, struct mw_call *call)
{
	if (backend == MW_BACKEND_SYSCALL_TRACEPOINT)
		return !(call->mmap_flags & MW_MAP_ANONYMOUS);
	return call->file != NULL;
}

/* mmap(2)'s fd, where the backend sees it and the kernel uses it. */
static __always_inline void mw_call_fd(__u16 backend, struct mw_call *call, __s32 *fd,
				       __u16 *call_flags)
{
	if (backend == MW_BACKEND_SYSCALL_TRACEPOINT && !(call->mmap_flags & MW_MAP_ANONYMOUS) &&
	    !(call->call_flags & MW_CALL_SHMAT)) {
		*fd = call->fd;
		*call_flags = MW_CALL_FD;
	} else {
		*fd = -1;
		*call_flags = 0;
	}
}

/* do_mmap returned `ret` (an address or a negative errno) for `call`. */
static __always_inline void mw_emit_do_mmap(__u16 backend, __u64 pid_tgid, struct mw_call *call,
					    __u64 ret)
{
	struct mw_scratch *s;
	struct mw_do_mmap *ev;
	__s64 vm_flags;
	bool priority;

	if (!mw_filter_task(pid_tgid, mw_filter_prot(call), mw_call_file_backed(backend, call)))
		return;
	s = mw_scratch();
	if (!s) {
		mw_count(MW_COUNTER_SCRATCH_MISSING);
		return;
	}
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
	mw_call_fd(backend, call, &ev->fd, &ev->call_flags);
	ev->_pad0 = 0;
	ev->file_source =
		mw_file_facts(backend, call, ret, &ev->file, s->path_buf, ev->path, &vm_flags);
	priority = mw_exec_flags(backend, call, ev->file_source, vm_flags, &ev->call_flags);
	/* A record without file facts cannot be matched by path: the path lists let it pass. */
	if (!mw_filter_path(ev->path, ev->file.path_len, ev->file.flags) ||
	    !mw_rate_allows(pid_tgid, priority))
		return;
	mw_output(ev, &ev->hdr, __builtin_offsetof(struct mw_do_mmap, path), ev->file.path_len,
		  MW_COUNTER_DO_MMAP_SENT, MW_COUNTER_DO_MMAP_RINGBUF_FULL, priority);
}

/*
 * The permission check for mapping `call` (its file NULL: anonymous memory).
 * `ret` is used by syscall_tracepoint only (see mw_file_facts).
 */
static __always_inline void mw_emit_security(__u16 backend, __u64 pid_tgid, struct mw_call *call,
					     __u64 ret, bool has_verdict, __s32 verdict)
{
	struct mw_scratch *s;
	struct mw_security_mmap_file *ev;
	__s64 vm_flags;
	bool priority;

	if (!mw_filter_task(pid_tgid, mw_filter_prot(call), mw_call_file_backed(backend, call)))
		return;
	s = mw_scratch();
	if (!s) {
		mw_count(MW_COUNTER_SCRATCH_MISSING);
		return;
	}
	ev = &s->security;
	mw_fill_header(&ev->hdr, MW_EVENT_SECURITY_MMAP_FILE, backend, pid_tgid);
	ev->prot = call->prot;
	ev->mmap_flags = call->mmap_flags;
	ev->verdict = has_verdict ? verdict : 0;
	ev->has_verdict = has_verdict;
	mw_call_fd(backend, call, &ev->fd, &ev->call_flags);
	ev->enforced = call->enforced;
	ev->action = call->action;
	ev->_pad0 = 0;
	ev->file_source =
		mw_file_facts(backend, call, ret, &ev->file, s->path_buf, ev->path, &vm_flags);
	priority = mw_exec_flags(backend, call, ev->file_source, vm_flags, &ev->call_flags);
	if (!mw_filter_path(ev->path, ev->file.path_len, ev->file.flags) ||
	    !mw_rate_allows(pid_tgid, priority))
		return;
	mw_output(ev, &ev->hdr, __builtin_offsetof(struct mw_security_mmap_file, path),
		  ev->file.path_len, MW_COUNTER_SECURITY_SENT, MW_COUNTER_SECURITY_RINGBUF_FULL,
		  priority);
}

#endif /* MAPWATCH_EMIT_H */
