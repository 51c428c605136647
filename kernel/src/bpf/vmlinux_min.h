/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types mapwatch reads, declared by hand.
 *
 * Every struct carries preserve_access_index, so clang records each field
 * access as a CO-RE relocation and the loader rewrites offsets for the running
 * kernel's BTF. Only the fields we read are listed; their order and the
 * missing members do not matter. Types that changed shape across kernels get
 * a "flavour" (struct foo___v2) and are read behind bpf_core_field_exists().
 */
#ifndef MAPWATCH_VMLINUX_MIN_H
#define MAPWATCH_VMLINUX_MIN_H

#include <linux/types.h>
#include <linux/bpf.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef __u16 umode_t;
typedef __s64 time64_t;
typedef __u32 dev_t;
typedef _Bool bool;
#define true 1
#define false 0

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct timespec64 {
	time64_t tv_sec;
	long tv_nsec;
};

struct qstr {
	union {
		struct {
			u32 hash;
			u32 len;
		};
		u64 hash_len;
	};
	const unsigned char *name;
};

struct super_block {
	dev_t s_dev;
	unsigned long s_iflags; /* SB_I_NOEXEC: executables ignored on this fs */
};

typedef struct {
	int counter;
} atomic_t;

struct inode {
	umode_t i_mode;
	atomic_t i_writecount; /* > 0: open for writing somewhere; < 0: being executed */
	unsigned long i_ino;
	dev_t i_rdev; /* a device file's device */
	struct super_block *i_sb;
	union {
		const unsigned int i_nlink;
		unsigned int __i_nlink;
	};
};

/* ctime, 6.11+: split seconds / nanoseconds (bit 31 of nsec is a flag on 6.13+). */
struct inode___ctime_split {
	time64_t i_ctime_sec;
	u32 i_ctime_nsec;
};

/* ctime, 6.6 - 6.10. */
struct inode___ctime_private {
	struct timespec64 __i_ctime;
};

/* ctime, before 6.6. */
struct inode___ctime_public {
	struct timespec64 i_ctime;
};

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
};

struct vfsmount {
	struct dentry *mnt_root;
	struct super_block *mnt_sb;
	int mnt_flags; /* MNT_NOEXEC */
};

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct file {
	struct path f_path;
	struct inode *f_inode;
	unsigned int f_flags;
};

/* A mapping: [vm_start, vm_end) of vm_file from page vm_pgoff (NULL: anonymous). */
struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	unsigned long vm_pgoff;
	struct file *vm_file;
	unsigned long vm_flags; /* VM_*; in an anonymous union since 6.3 (CO-RE finds it) */
};

struct fs_struct {
	struct path root;
};

struct ns_common {
	unsigned int inum;
};

struct mnt_namespace {
	struct ns_common ns;
};

struct pid_namespace {
	struct ns_common ns;
};

struct nsproxy {
	struct mnt_namespace *mnt_ns;
	struct pid_namespace *pid_ns_for_children;
};

typedef struct {
	u32 val;
} kuid_t;

typedef struct {
	u32 val;
} kgid_t;

struct cred {
	kuid_t euid;
	kgid_t egid;
};

/* x86: a number no other address space ever had (its TLB context id). */
typedef struct {
	u64 ctx_id;
} mm_context_t;

struct mm_struct {
	unsigned long brk;
	atomic_t mm_users; /* tasks using the address space (0: torn down) */
	mm_context_t context;
	struct file *exe_file; /* the executable (/proc/PID/exe) */
};

struct signal_struct {
	atomic_t live; /* threads not yet exited: 0 once the last one is in do_exit */
};

struct task_struct {
	const struct cred *cred;
	unsigned int personality; /* READ_IMPLIES_EXEC */
	struct mm_struct *mm;
	struct signal_struct *signal;
	u64 start_time;
	struct task_struct *group_leader;
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct fs_struct *fs;
	struct nsproxy *nsproxy;
};

#pragma clang attribute pop

/*
 * kprobe context: the registers at the probed instruction, in the layout of
 * x86-64's struct pt_regs (the same in the UAPI and the kernel).
 */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#define MW_REGS_ARG(regs, n)                                                                     \
	((n) == 0 ? (regs)->di :                                                                 \
	 (n) == 1 ? (regs)->si :                                                                 \
	 (n) == 2 ? (regs)->dx :                                                                 \
	 (n) == 3 ? (regs)->cx :                                                                 \
	 (n) == 4 ? (regs)->r8 :                                                                 \
		    (regs)->r9)
#define MW_REGS_RET(regs) ((regs)->ax)
#define MW_REGS_SP(regs) ((regs)->sp)
#else
#error "mapwatch's kprobe backends know the x86-64 register layout only"
#endif

/*
 * Syscall tracepoint contexts. Their layout is the tracepoint format
 * (events/syscalls/sys_{enter,exit}_mmap/format), a stable ABI, not a
 * kernel struct: no relocation.
 */
struct mw_sys_enter_ctx {
	u64 common;          /* type, flags, preempt count, pid */
	long syscall_nr;
	unsigned long args[6];
};

struct mw_sys_exit_ctx {
	u64 common;
	long syscall_nr;
	long ret;
};

#endif /* MAPWATCH_VMLINUX_MIN_H */
