/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Backends on the kernel functions themselves: they see every mapping,
 * including those the kernel makes (the ELF loader at execve, shmat), and the
 * permission check's verdict.
 *
 *   do_mmap(file, addr, len, prot, flags, [vm_flags,] pgoff, populate, uf)
 *   security_mmap_file(file, prot, flags)                        -> 0 / -errno
 *   LSM hook mmap_file(file, reqprot, prot, flags)  (+ ret of the LSMs before)
 *
 * do_mmap gained vm_flags in 6.5: mw_config_do_mmap_nargs (from the kernel's
 * BTF) says where pgoff is.
 */
#ifndef MAPWATCH_KERNEL_HOOKS_H
#define MAPWATCH_KERNEL_HOOKS_H

#include "emit.h"
#include "enforce.h"

static __always_inline __u32 mw_do_mmap_pgoff_index(void)
{
	return mw_config_do_mmap_nargs >= 9 ? 6 : 5;
}

/* ---- fexit: arguments and result in one program ---- */

static __always_inline int mw_fexit_do_mmap(__u64 *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call call = {};
	__u64 file = 0, ret = 0;

	if (mw_ignored(pid_tgid))
		return 0;
	bpf_get_func_arg(ctx, 0, &file);
	bpf_get_func_arg(ctx, 2, &call.len);
	bpf_get_func_arg(ctx, 3, &call.prot);
	bpf_get_func_arg(ctx, 4, &call.mmap_flags);
	bpf_get_func_arg(ctx, mw_do_mmap_pgoff_index(), &call.pgoff);
	bpf_get_func_ret(ctx, &ret);
	call.file = (struct file *)file;
	/* A trampoline sees only the return: no entry time. */
	call.start_ns = 0;
	mw_emit_do_mmap(MW_BACKEND_FEXIT, pid_tgid, &call, ret);
	return 0;
}

static __always_inline int mw_fexit_security_mmap_file(__u64 *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call call = {};
	__u64 file = 0, ret = 0;

	if (mw_ignored(pid_tgid))
		return 0;
	bpf_get_func_arg(ctx, 0, &file);
	bpf_get_func_arg(ctx, 1, &call.prot);
	bpf_get_func_arg(ctx, 2, &call.mmap_flags);
	bpf_get_func_ret(ctx, &ret);
	call.file = (struct file *)file;
	mw_emit_security(MW_BACKEND_FEXIT, pid_tgid, &call, 0, true, (__s32)ret);
	return 0;
}

/* ---- lsm: the hook itself; sees the verdict of the LSMs that ran before ---- */

static __always_inline int mw_lsm_mmap_file(__u64 *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call call = {};
	__u64 file = 0;
	int ret = (int)ctx[4];

	if (mw_ignored(pid_tgid))
		return ret;
	/*
	 * The verifier trusts `file` to be non-NULL in LSM programs and may drop a
	 * NULL test: read the slot as a plain number first.
	 */
	bpf_probe_read_kernel(&file, sizeof(file), &ctx[0]);
	call.file = (struct file *)file;
	/* reqprot; the kernel's prot (READ_IMPLIES_EXEC applied) is judged. */
	call.prot = ctx[1];
	call.mmap_flags = ctx[3];
	if ((ctx[2] & MW_PROT_EXEC) && !(call.prot & MW_PROT_EXEC))
		call.call_flags |= MW_CALL_IMPLIED_EXEC;
	if (mw_enforcing()) {
		call.action = mw_enforce_decide(pid_tgid, mw_reasons_mmap(call.file, ctx[2]),
						&call.enforced);
		ret = mw_enforce_verdict(ret, call.action);
	}
	mw_emit_security(MW_BACKEND_LSM, pid_tgid, &call, 0, true, ret);
	return ret; /* observed, or refused by enforcement */
}

/* ---- kprobe + kretprobe: arguments kept per thread until the return ---- */

static __always_inline int mw_kprobe_do_mmap(struct pt_regs *regs)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call call = {};

	if (mw_ignored(pid_tgid))
		return 0;
	call.file = (struct file *)MW_REGS_ARG(regs, 0);
	call.len = MW_REGS_ARG(regs, 2);
	call.prot = MW_REGS_ARG(regs, 3);
	call.mmap_flags = MW_REGS_ARG(regs, 4);
	if (mw_do_mmap_pgoff_index() == 5) {
		call.pgoff = MW_REGS_ARG(regs, 5);
	} else {
		/* The 7th argument is on the stack, above the return address. */
		bpf_probe_read_kernel(&call.pgoff, sizeof(call.pgoff),
				      (void *)(MW_REGS_SP(regs) + 8));
	}
	call.start_ns = bpf_ktime_get_ns();
	mw_stash_call(&mw_pending_kprobe_do_mmap, pid_tgid, &call, MW_COUNTER_PENDING_MAP_FULL);
	return 0;
}

static __always_inline int mw_kretprobe_do_mmap(struct pt_regs *regs)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call *call;

	if (mw_ignored(pid_tgid))
		return 0;
	call = mw_find_call(&mw_pending_kprobe_do_mmap, pid_tgid);
	if (!call)
		return 0;
	mw_emit_do_mmap(MW_BACKEND_KPROBE, pid_tgid, call, MW_REGS_RET(regs));
	bpf_map_delete_elem(&mw_pending_kprobe_do_mmap, &pid_tgid);
	return 0;
}

static __always_inline int mw_kprobe_security_mmap_file(struct pt_regs *regs)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call call = {};

	if (mw_ignored(pid_tgid))
		return 0;
	call.file = (struct file *)MW_REGS_ARG(regs, 0);
	call.prot = MW_REGS_ARG(regs, 1);
	call.mmap_flags = MW_REGS_ARG(regs, 2);
	mw_stash_call(&mw_pending_kprobe_security, pid_tgid, &call,
		      MW_COUNTER_SECURITY_PENDING_MAP_FULL);
	return 0;
}

static __always_inline int mw_kretprobe_security_mmap_file(struct pt_regs *regs)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_call *call;

	if (mw_ignored(pid_tgid))
		return 0;
	call = mw_find_call(&mw_pending_kprobe_security, pid_tgid);
	if (!call)
		return 0;
	mw_emit_security(MW_BACKEND_KPROBE, pid_tgid, call, 0, true, (__s32)MW_REGS_RET(regs));
	bpf_map_delete_elem(&mw_pending_kprobe_security, &pid_tgid);
	return 0;
}

#endif /* MAPWATCH_KERNEL_HOOKS_H */
