/* SPDX-License-Identifier: GPL-2.0 */
/*
 * execve: sched_process_exec fires in the task that exec'd, with its new
 * memory, before it returns to user space.
 *
 * 1. A header-only record (MW_EVENT_PROCESS_EXEC) tells the agent to forget
 *    what it cached about the process: its executable, command line and
 *    name changed while pid and start time did not.
 * 2. With do_mmap on syscall_tracepoint (mw_exec_config[0] = 1, set by the
 *    agent), the mappings the ELF loader made inside execve, which no
 *    syscall tracepoint sees, are reported from the new address space: the
 *    executable's segments (from the auxiliary vector's AT_PHDR, which lies
 *    in its first segment; mm->start_code when absent) and the interpreter's
 *    (from AT_BASE, its load address; none for a static program). Each VMA
 *    from there on that maps the same file is one do_mmap record, with
 *    MW_CALL_EXEC in call_flags, the file read from the VMA under the mmap
 *    lock (bpf_find_vma), prot from the VMA's flags, flags MAP_PRIVATE, no fd.
 *    The walk stops at the first gap or other file (bss, heap), after
 *    MW_EXEC_MAX_SEGMENTS VMAs, or when the mmap lock is busy (counted as
 *    MW_COUNTER_VMA_BUSY).
 * The header goes first, so the agent names the new executable on the
 * records that follow.
 */
#ifndef MAPWATCH_EXEC_H
#define MAPWATCH_EXEC_H

#include "vma.h"
#include "filter.h"

#define MW_AT_NULL 0
#define MW_AT_PHDR 3
#define MW_AT_BASE 7
#define MW_AUXV_PAIRS 32 /* saved_auxv holds AT_VECTOR_SIZE / 2 (26 on x86-64) pairs */
#define MW_EXEC_MAX_SEGMENTS 8
#define MW_MAP_PRIVATE 0x02
#define MW_VM_PROT_MASK 0x7 /* VM_READ | VM_WRITE | VM_EXEC = PROT_READ | PROT_WRITE | PROT_EXEC */

struct mm_struct___mw_exec {
	unsigned long start_code;
	unsigned long saved_auxv[2];
} __attribute__((preserve_access_index));

struct task_struct___mw_exec {
	struct mm_struct___mw_exec *mm;
} __attribute__((preserve_access_index));

struct vm_area_struct___mw_exec {
	unsigned long vm_flags;
} __attribute__((preserve_access_index));

/* Set by the agent: [0] = 1 when the execve mappings are to be reported. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} mw_exec_config SEC(".maps");

struct mw_exec_walk {
	__u64 pid_tgid;
	__u64 addr;            /* next address to look up */
	__u64 file;            /* the ELF's struct file, as a number: compared, never read */
	struct mw_scratch *s;  /* the record is built in s->do_mmap */
	__u32 done;            /* the VMA at addr is not the ELF's */
	__u32 _pad0;
};

/* Runs under the mmap lock (read): the VMA and its file stay valid until it returns. */
static long mw_exec_vma_cb(struct task_struct *task, struct vm_area_struct *vma,
			   struct mw_exec_walk *w)
{
	struct vm_area_struct___mw_exec *v = (void *)vma;
	struct file *file = BPF_CORE_READ(vma, vm_file);
	struct mw_do_mmap *ev = &w->s->do_mmap;
	__u64 start = BPF_CORE_READ(vma, vm_start);
	__u64 end = BPF_CORE_READ(vma, vm_end);

	if (!file || (w->file && (__u64)file != w->file)) {
		w->done = 1;
		return 0;
	}
	w->file = (__u64)file;
	ev->addr = start;
	ev->len = end - start;
	ev->pgoff = BPF_CORE_READ(vma, vm_pgoff);
	ev->prot = BPF_CORE_READ(v, vm_flags) & MW_VM_PROT_MASK;
	mw_file_info(file, &ev->file, w->s->path_buf, ev->path);
	w->addr = end;
	return 0;
}

/* One VMA of the ELF at w->addr: one record. Returns 1 to stop. */
static long mw_exec_step(__u32 index, struct mw_exec_walk *w)
{
	struct mw_scratch *s = w->s;
	struct mw_do_mmap *ev;
	long err;

	if (!s)
		return 1;
	ev = &s->do_mmap;
	mw_fill_header(&ev->hdr, MW_EVENT_DO_MMAP, MW_BACKEND_SYSCALL_TRACEPOINT, w->pid_tgid);
	err = bpf_find_vma(bpf_get_current_task_btf(), w->addr, mw_exec_vma_cb, w, 0);
	if (err) {
		if (err == -MW_EBUSY)
			mw_count(MW_COUNTER_VMA_BUSY);
		return 1;
	}
	if (w->done)
		return 1;
	ev->error = 0;
	ev->mmap_flags = MW_MAP_PRIVATE;
	ev->start_ns = 0;
	ev->fd = -1;
	ev->file_source = MW_FILE_SOURCE_VMA;
	ev->call_flags = MW_CALL_EXEC;
	ev->_pad0 = 0;
	if (!mw_filter_task(w->pid_tgid, ev->prot, true) ||
	    !mw_filter_path(ev->path, ev->file.path_len, ev->file.flags | MW_FILE_PRESENT) ||
	    !mw_rate_allows(w->pid_tgid, ev->prot & MW_PROT_EXEC))
		return 0;
	mw_output(ev, &ev->hdr, __builtin_offsetof(struct mw_do_mmap, path), ev->file.path_len,
		  MW_COUNTER_DO_MMAP_SENT, MW_COUNTER_DO_MMAP_RINGBUF_FULL, ev->prot & MW_PROT_EXEC);
	return 0;
}

/* Reports the VMAs of the file mapped at `start` and after it. */
static __always_inline void mw_exec_report_elf(__u64 pid_tgid, __u64 start)
{
	struct mw_exec_walk w = {
		.pid_tgid = pid_tgid,
		.addr = start,
	};

	if (!start)
		return;
	w.s = mw_scratch();
	if (!w.s) {
		mw_count(MW_COUNTER_SCRATCH_MISSING);
		return;
	}
	bpf_loop(MW_EXEC_MAX_SEGMENTS, mw_exec_step, &w, 0);
}

static __always_inline void mw_exec_mappings(__u64 pid_tgid)
{
	struct task_struct___mw_exec *task = (void *)bpf_get_current_task();
	struct mm_struct___mw_exec *mm = BPF_CORE_READ(task, mm);
	__u64 phdr = 0, base = 0, pair[2];
	void *auxv;
	int i;

	if (!mm)
		return;
	auxv = __builtin_preserve_access_index(&mm->saved_auxv[0]);
	for (i = 0; i < MW_AUXV_PAIRS; i++) {
		if (bpf_probe_read_kernel(pair, sizeof(pair), auxv + i * sizeof(pair)))
			break;
		if (pair[0] == MW_AT_NULL)
			break;
		if (pair[0] == MW_AT_PHDR)
			phdr = pair[1];
		else if (pair[0] == MW_AT_BASE)
			base = pair[1];
	}
	if (!phdr)
		phdr = BPF_CORE_READ(mm, start_code);
	mw_exec_report_elf(pid_tgid, phdr);
	mw_exec_report_elf(pid_tgid, base);
}

static __always_inline int mw_process_exec(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct mw_header hdr;
	__u32 zero = 0, *report_mappings;

	if (mw_ignored(pid_tgid))
		return 0;
	/* Every byte of hdr is set there (padding included): no stack bytes leave. */
	mw_fill_header(&hdr, MW_EVENT_PROCESS_EXEC, MW_BACKEND_SYSCALL_TRACEPOINT, pid_tgid);
	hdr.size = sizeof(hdr);
	if (bpf_ringbuf_output(&mw_events, &hdr, sizeof(hdr), 0))
		mw_count(MW_COUNTER_EXEC_RINGBUF_FULL);
	else
		mw_count(MW_COUNTER_EXEC_SENT);
	report_mappings = bpf_map_lookup_elem(&mw_exec_config, &zero);
	if (report_mappings && *report_mappings)
		mw_exec_mappings(pid_tgid);
	return 0;
}

#endif /* MAPWATCH_EXEC_H */
