/* SPDX-License-Identifier: GPL-2.0 */
/* What we report about a mapped file: identity, times, flags and full path. */
#ifndef MAPWATCH_FILE_H
#define MAPWATCH_FILE_H

#include "common.h"

/* Upper bound on dentries + mount crossings walked for one path. */
#define MW_PATH_MAX_STEPS 256
#define MW_S_IWOTH 0002
#define MW_NAME_MASK 255 /* NAME_MAX */

struct mw_path_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct dentry *root_dentry;
	struct vfsmount *root_mnt;
	char *buf;      /* mw_scratch.path_buf */
	__u32 start;    /* path occupies buf[start, MW_PATH_MAX) */
	__u32 complete; /* reached the root */
	__u32 naming;   /* still prepending names (not past the root, nothing cut) */
	__u32 top;      /* reached the top: the walk for world-writable directories ended */
	__u32 world_writable; /* a directory on the way up is writable by anyone */
	__u32 past_root; /* the path reached the task's root; the walk goes on above it */
	__u32 chroot;    /* above the task's root there is more than mounts on "/" */
	__u32 _pad0;
};

static __always_inline struct mount *mw_real_mount(struct vfsmount *vfsmnt)
{
	return (struct mount *)((void *)vfsmnt - bpf_core_field_offset(struct mount, mnt));
}

/* Prepends "/name" of `dentry`; false when it does not fit (the path stays truncated). */
static __always_inline bool mw_prepend_name(struct mw_path_walk *w, struct dentry *dentry)
{
	struct qstr name;
	__u32 len, start;

	if (bpf_core_read(&name, sizeof(name), &dentry->d_name))
		return false;
	len = name.len;
	start = w->start;
	if (len > MW_NAME_MASK || len + 1 > start)
		return false;
	start -= len + 1;
	mw_barrier_var(start);
	start &= MW_PATH_MAX - 1;
	w->buf[start] = '/';
	mw_barrier_var(len);
	len &= MW_NAME_MASK;
	if (bpf_probe_read_kernel(w->buf + start + 1, len, name.name))
		return false;
	w->start = start;
	return true;
}

/*
 * One step of the walk from a dentry up to the task's root, like the kernel's
 * prepend_path(): prepend "/name", or cross from a mount's root to its
 * mountpoint in the parent mount. Returns 1 to stop.
 */
static long mw_path_step(__u32 index, struct mw_path_walk *w)
{
	/* Plain locals: BPF_CORE_READ on w->x would relocate our own struct. */
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
	struct inode *dir;

	if (dentry == w->root_dentry && vfsmnt == w->root_mnt && w->naming) {
		/* The path ends here; the walk goes on: a chroot inside /tmp is inside /tmp. */
		w->complete = 1;
		w->naming = 0;
		w->past_root = 1;
	}
	if (dentry == mnt_root) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

		if (up == mnt) {
			/* Top of a detached or internal mount, or the real root: done. */
			w->complete |= w->naming;
			w->top = 1;
			return 1;
		}
		/* The mountpoint's own mode is hidden by the mount: not checked. */
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		/*
		 * Past the task's root, mounts stacked on "/" (the real root fs on
		 * the namespace's rootfs) are still the top; one mounted on a
		 * directory means the root was that directory: a chroot (the kernel's
		 * current_chrooted()).
		 */
		if (w->past_root && w->dentry != BPF_CORE_READ(up, mnt.mnt_root))
			w->chroot = 1;
		w->mnt = up;
		w->vfsmnt = &up->mnt;
		return 0;
	}
	if (dentry == parent) {
		/*
		 * A root that is not a mount's root: a pseudo file (memfd, anonymous
		 * inode) or a disconnected dentry. Its own name is the whole path,
		 * e.g. "/memfd:name"; it has no directory.
		 */
		if (w->naming)
			w->complete = mw_prepend_name(w, dentry);
		w->top = 1;
		return 1;
	}
	/* A directory above the task's root: it is chrooted. */
	w->chroot |= w->past_root;
	dir = BPF_CORE_READ(parent, d_inode);
	if (dir && (BPF_CORE_READ(dir, i_mode) & MW_S_IWOTH))
		w->world_writable = 1;
	if (w->naming && !mw_prepend_name(w, dentry))
		w->naming = 0; /* too long: the path stays cut, the walk goes on */
	w->dentry = parent;
	/* Past the path, only a world-writable directory was left to find. */
	return !w->naming && w->world_writable;
}

/*
 * Writes the path of `file` (relative to the current task's root, crossing
 * mount points) into `out` and returns its length. bpf_loop keeps the
 * verifier's cost to one pass over the step whatever the depth.
 */
static __always_inline __u32 mw_file_path(struct file *file, char *buf, char *out, __u32 *flags)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct mw_path_walk w = {};
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	struct path root;
	__u32 len;

	if (!fs || bpf_core_read(&root, sizeof(root), &fs->root) ||
	    bpf_core_read(&w.vfsmnt, sizeof(w.vfsmnt), &file->f_path.mnt) ||
	    bpf_core_read(&w.dentry, sizeof(w.dentry), &file->f_path.dentry)) {
		/* No walk: neither the path nor its directories are known. */
		*flags |= MW_FILE_PATH_TRUNCATED | MW_FILE_DIR_WORLD_WRITABLE;
		return 0;
	}
	w.mnt = mw_real_mount(w.vfsmnt);
	w.root_dentry = root.dentry;
	w.root_mnt = root.mnt;
	w.buf = buf;
	w.start = MW_PATH_MAX - 1; /* at most MW_PATH_MAX - 1 bytes: a length mask of 4095 holds it */
	w.naming = 1;

	bpf_loop(MW_PATH_MAX_STEPS, mw_path_step, &w, 0);
	if (!w.complete)
		*flags |= MW_FILE_PATH_TRUNCATED;
	if (w.chroot)
		*flags |= MW_FILE_PATH_CHROOT;
	/* A walk that ended before the top cannot clear the file: fail closed. */
	if (w.world_writable || !w.top)
		*flags |= MW_FILE_DIR_WORLD_WRITABLE;

	len = MW_PATH_MAX - 1 - w.start;
	if (len == 0) {
		out[0] = '/';
		return 1;
	}
	mw_barrier_var(len);
	len &= MW_PATH_MAX - 1;
	__u32 start = w.start & (MW_PATH_MAX - 1);
	if (bpf_probe_read_kernel(out, len, buf + start)) {
		*flags |= MW_FILE_PATH_TRUNCATED; /* nothing of the path went out */
		return 0;
	}
	return len;
}

/* Upper bound on directories (and mount crossings) walked up from a file. */
#define MW_ANCESTOR_MAX_STEPS 64
#define MW_S_IFMT 0170000
#define MW_S_IFCHR 0020000
#define MW_DEV_ZERO ((1U << 20) | 5) /* /dev/zero: char device 1:5, kernel encoding */

struct mw_ancestor_walk {
	struct dentry *dentry;
	struct mount *mnt;
	__u32 found; /* a directory on the way up is writable by anyone */
	__u32 _pad0;
};

/*
 * One step up from a dentry: crosses from a mount's root to its mountpoint
 * (whose own mode the mount hides), else checks the parent directory's mode.
 * The walk goes up to the real root, past the task's root: a chroot inside
 * /tmp is still inside /tmp. Returns 1 to stop.
 */
static long mw_ancestor_step(__u32 index, struct mw_ancestor_walk *w)
{
	struct dentry *dentry = w->dentry;
	struct mount *mnt = w->mnt;
	struct dentry *parent;
	struct inode *dir;

	if (dentry == BPF_CORE_READ(mnt, mnt.mnt_root)) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

		if (up == mnt)
			return 1;
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		return 0;
	}
	parent = BPF_CORE_READ(dentry, d_parent);
	if (!parent || parent == dentry)
		return 1;
	dir = BPF_CORE_READ(parent, d_inode);
	if (dir && (BPF_CORE_READ(dir, i_mode) & MW_S_IWOTH)) {
		w->found = 1;
		return 1;
	}
	w->dentry = parent;
	return 0;
}

/*
 * Whether a directory above `file` is writable by anyone: /tmp, /dev/shm, or
 * a private 0700 directory made inside one (its owner could be anyone). A walk
 * that does not reach the root within its bound counts as found (fail closed).
 */
static __always_inline bool mw_ancestor_world_writable(struct file *file)
{
	struct mw_ancestor_walk w = {};
	struct vfsmount *vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	long steps;

	w.dentry = BPF_CORE_READ(file, f_path.dentry);
	if (!w.dentry || !vfsmnt)
		return false;
	w.mnt = mw_real_mount(vfsmnt);
	steps = bpf_loop(MW_ANCESTOR_MAX_STEPS, mw_ancestor_step, &w, 0);
	return w.found || steps >= MW_ANCESTOR_MAX_STEPS;
}

/* Eight bytes of a name as a little-endian word, for a whole-word compare. */
#define MW_W8(a, b, c, d, e, f, g, h)                                                             \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | (__u64)(e) << 32 |   \
	 (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)

/*
 * Whether a dentry name is the one whose first 8 bytes are `w0` and whose
 * next bytes, under `mask1`, are `w1` (the NUL included): two word
 * compares, no per-byte branches for the verifier to walk.
 */
static __always_inline bool mw_name_is(const unsigned char *name, __u64 w0, __u64 w1, __u64 mask1)
{
	__u64 words[2] = {};

	if (bpf_probe_read_kernel(words, sizeof(words), name))
		return false;
	return words[0] == w0 && (words[1] & mask1) == w1;
}

/* Whether a dentry name's first 8 bytes, under `mask0`, are `w0`. */
static __always_inline bool mw_name_starts(const unsigned char *name, __u64 w0, __u64 mask0)
{
	__u64 word = 0;

	if (bpf_probe_read_kernel(&word, sizeof(word), name))
		return false;
	return (word & mask0) == w0;
}

/*
 * Anonymous memory behind a file (MW_FILE_ANON_MEMORY): /dev/zero (any device
 * node 1:5, whatever its name), or a pseudo file the kernel makes for shared
 * anonymous memory ("dev/zero" in shmem, "anon_hugepage" in hugetlbfs).
 */
static __always_inline bool mw_file_anon_memory(struct dentry *dentry, struct inode *inode)
{
	const unsigned char *name;

	if ((BPF_CORE_READ(inode, i_mode) & MW_S_IFMT) == MW_S_IFCHR)
		return BPF_CORE_READ(inode, i_rdev) == MW_DEV_ZERO;
	if (BPF_CORE_READ(dentry, d_parent) != dentry || BPF_CORE_READ(inode, i_nlink) != 0)
		return false;
	name = BPF_CORE_READ(dentry, d_name.name);
	/*
	 * "dev/zero\0" (shmem) and "anon_hugepage\0" (hugetlbfs); "SYSV" and
	 * the key in hex: a System V shared memory segment (shmat).
	 */
	return mw_name_is(name, MW_W8('d', 'e', 'v', '/', 'z', 'e', 'r', 'o'), 0, 0xff) ||
	       mw_name_is(name, MW_W8('a', 'n', 'o', 'n', '_', 'h', 'u', 'g'),
			  MW_W8('e', 'p', 'a', 'g', 'e', 0, 0, 0), 0xffffffffffffULL) ||
	       mw_name_starts(name, MW_W8('S', 'Y', 'S', 'V', 0, 0, 0, 0), 0xffffffffULL);
}

/*
 * The facts that make an executable mapping of `file` suspicious, but its
 * directories: MW_FILE_DELETED (no links left), MW_FILE_OPEN_FOR_WRITE (some
 * process has it open for writing), MW_FILE_ANON_MEMORY (it is anonymous
 * memory). MW_FILE_DIR_WORLD_WRITABLE (a directory above it is writable by
 * anyone) comes from the path walk of a record (mw_file_path: one bpf_loop
 * for both), or from mw_ancestor_world_writable where no path is built
 * (enforcement). A pseudo file (memfd and the like: a dentry that is its own
 * parent) has no directory.
 */
static __always_inline __u32 mw_file_risk_flags(struct file *file, struct inode *inode)
{
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	__u32 flags = 0;

	if (inode) {
		if (BPF_CORE_READ(inode, i_nlink) == 0)
			flags |= MW_FILE_DELETED;
		if (BPF_CORE_READ(inode, i_writecount.counter) > 0)
			flags |= MW_FILE_OPEN_FOR_WRITE;
		if (dentry && mw_file_anon_memory(dentry, inode))
			flags |= MW_FILE_ANON_MEMORY;
	}
	return flags;
}

/*
 * Whether the kernel refuses to map `file` executable implicitly: the
 * kernel's path_noexec() (MNT_NOEXEC on the mount, SB_I_NOEXEC on its fs).
 */
static __always_inline bool mw_file_noexec(struct file *file)
{
	struct vfsmount *mnt = BPF_CORE_READ(file, f_path.mnt);

	return (BPF_CORE_READ(mnt, mnt_flags) & 0x04 /* MNT_NOEXEC */) ||
	       (BPF_CORE_READ(mnt, mnt_sb, s_iflags) & 0x02 /* SB_I_NOEXEC */);
}

/* The path buffers as sized types: a global function's pointer arguments need a size. */
struct mw_path_work {
	char bytes[MW_PATH_MAX * 2]; /* mw_scratch.path_buf and its kin */
};
struct mw_path_text {
	char bytes[MW_PATH_MAX]; /* a record's path */
};

/*
 * Fills `info` and `out` (the record's path) for a mapping of `file` (may be
 * 0), using `buf` to build the path. Global, not inline: the verifier checks
 * it once per program, whatever state its callers reach it in, which keeps
 * the path walk's cost out of every branch of every caller. The file comes as
 * a number (it is only ever read with probe reads).
 */
__noinline int mw_read_file(__u64 file_addr, struct mw_file *info, struct mw_path_work *buf,
			    struct mw_path_text *out)
{
	struct file *file = (struct file *)file_addr;
	struct inode *inode;

	if (!info || !buf || !out)
		return 0;
	__builtin_memset(info, 0, sizeof(*info));
	if (!file)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	info->flags = MW_FILE_PRESENT | mw_file_risk_flags(file, inode);
	info->open_flags = BPF_CORE_READ(file, f_flags);
	if (inode) {
		info->inode = BPF_CORE_READ(inode, i_ino);
		info->dev = BPF_CORE_READ(inode, i_sb, s_dev);
		info->mode = BPF_CORE_READ(inode, i_mode);
		info->ctime_ns = mw_inode_ctime_ns(inode);
	}
	info->path_len = mw_file_path(file, buf->bytes, out->bytes, &info->flags);
	return 0;
}

/* mw_read_file for the buffers as the callers hold them. */
static __always_inline void mw_file_info(struct file *file, struct mw_file *info, char *buf,
					 char *out)
{
	mw_read_file((__u64)file, info, (struct mw_path_work *)buf, (struct mw_path_text *)out);
}

#endif /* MAPWATCH_FILE_H */
