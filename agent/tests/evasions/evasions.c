// SPDX-License-Identifier: GPL-2.0
/*
 * Evasions of mapwatch's detection, done for real: each technique makes
 * memory executable the way an attacker would, writes code into it, runs it,
 * and prints what the agent must have seen:
 *
 *   <technique> pid=<pid> addr=0x<address> ran=<the code's return value>
 *
 * The test (agent/tests/detection.rs) finds the records by pid and address
 * and checks their reasons. The code returns 42: a line that says ran=42
 * proves the memory was executable. Built static (agent/build.rs) so the
 * same binary runs in the VM matrix.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
/* mov eax, 42; ret */
static const unsigned char CODE[] = { 0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3 };

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int run(void *code)
{
	return ((int (*)(void))code)();
}

static void report(const char *technique, void *addr, int ran)
{
	printf("%s pid=%d addr=%#lx ran=%d\n", technique, getpid(), (unsigned long)addr, ran);
	fflush(stdout);
}

/* An RWX anonymous page with the code planted in it. */
static void *map_rwx_code(void)
{
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	memcpy(p, CODE, sizeof(CODE));
	return p;
}

static void *map_rw(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

/* personality(READ_IMPLIES_EXEC): mmap(PROT_READ|PROT_WRITE) is RWX. */
static int rie_mmap(void)
{
	if (personality(READ_IMPLIES_EXEC) < 0)
		die("personality");
	void *p = map_rw(PAGE);
	memcpy(p, CODE, sizeof(CODE));
	report("rie_mmap", p, run(p));
	return 0;
}

/* personality(READ_IMPLIES_EXEC): a PROT_READ memfd mapping is R-X. */
static int rie_file(void)
{
	int fd = memfd_create("mw-rie", 0);
	if (fd < 0 || write(fd, CODE, sizeof(CODE)) != sizeof(CODE) || ftruncate(fd, PAGE))
		die("memfd");
	if (personality(READ_IMPLIES_EXEC) < 0)
		die("personality");
	void *p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	report("rie_file", p, run(p));
	return 0;
}

/* RW memory written, then mprotect(PROT_READ) under READ_IMPLIES_EXEC: R-X. */
static int rie_mprotect(void)
{
	void *p = map_rw(PAGE);
	memcpy(p, CODE, sizeof(CODE));
	if (personality(READ_IMPLIES_EXEC) < 0)
		die("personality");
	if (mprotect(p, PAGE, PROT_READ))
		die("mprotect");
	report("rie_mprotect", p, run(p));
	return 0;
}

/* The heap under READ_IMPLIES_EXEC is RWX: brk alone makes code runnable. */
static int rie_brk(void)
{
	if (personality(READ_IMPLIES_EXEC) < 0)
		die("personality");
	uintptr_t old = (uintptr_t)sbrk(0);
	uintptr_t start = (old + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
	if (sbrk((start - old) + 4 * PAGE) == (void *)-1)
		die("sbrk");
	memcpy((void *)start, CODE, sizeof(CODE));
	report("rie_brk", (void *)start, run((void *)start));
	return 0;
}

/* A private mapping of /dev/zero is anonymous memory: filled through /proc/self/mem. */
static int devzero(void)
{
	int zero = open("/dev/zero", O_RDONLY);
	if (zero < 0)
		die("/dev/zero");
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE, zero, 0);
	if (p == MAP_FAILED)
		die("mmap");
	int mem = open("/proc/self/mem", O_RDWR);
	if (mem < 0 || pwrite(mem, CODE, sizeof(CODE), (off_t)(uintptr_t)p) != sizeof(CODE))
		die("/proc/self/mem");
	report("devzero", p, run(p));
	return 0;
}

/* Shared anonymous memory written, then made executable. */
static int shared_anon(void)
{
	void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	memcpy(p, CODE, sizeof(CODE));
	if (mprotect(p, PAGE, PROT_READ | PROT_EXEC))
		die("mprotect");
	report("shared_anon", p, run(p));
	return 0;
}

/* RW -> R, then `n` other ranges RW -> R (not touching), then RX. */
static int history_flood(int n)
{
	void *target = map_rw(PAGE);
	memcpy(target, CODE, sizeof(CODE));
	if (mprotect(target, PAGE, PROT_READ))
		die("mprotect");
	for (int i = 0; i < n; i++) {
		/* Two pages, the first made read-only: ranges that never touch. */
		char *other = map_rw(2 * PAGE);
		other[0] = 1;
		if (mprotect(other, PAGE, PROT_READ))
			die("mprotect");
	}
	if (mprotect(target, PAGE, PROT_READ | PROT_EXEC))
		die("mprotect");
	report("history_flood", target, run(target));
	return 0;
}

static void *write_then_protect(void)
{
	void *p = map_rw(PAGE);
	memcpy(p, CODE, sizeof(CODE));
	if (mprotect(p, PAGE, PROT_READ))
		die("mprotect");
	return p;
}

/* The parent writes and drops write; its forked child makes it executable. */
static int history_fork(void)
{
	void *p = write_then_protect();
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		if (mprotect(p, PAGE, PROT_READ | PROT_EXEC))
			die("mprotect");
		report("history_fork", p, run(p));
		_exit(0);
	}
	int status;
	waitpid(child, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* The parent writes; a CLONE_VM child (vfork) makes it executable; the parent runs it. */
static int history_vfork(void)
{
	void *p = write_then_protect();
	volatile pid_t child_pid = 0;
	pid_t child = vfork();
	if (child < 0)
		die("vfork");
	if (child == 0) {
		child_pid = getpid();
		if (mprotect(p, PAGE, PROT_READ | PROT_EXEC))
			_exit(1);
		_exit(0);
	}
	int status;
	waitpid(child, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return 1;
	int ran = run(p);
	printf("history_vfork pid=%d addr=%#lx ran=%d\n", child_pid, (unsigned long)p, ran);
	fflush(stdout);
	return 0;
}

/* A CLONE_VM child writes and drops write, then exits; the parent makes it executable. */
static int history_vfork_writer(void)
{
	void *volatile p = NULL;
	pid_t child = vfork();
	if (child < 0)
		die("vfork");
	if (child == 0) {
		void *q = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (q == MAP_FAILED)
			_exit(1);
		memcpy(q, CODE, sizeof(CODE));
		if (mprotect(q, PAGE, PROT_READ))
			_exit(1);
		p = q;
		_exit(0);
	}
	int status;
	waitpid(child, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) || !p)
		return 1;
	if (mprotect(p, PAGE, PROT_READ | PROT_EXEC))
		die("mprotect");
	report("history_vfork_writer", p, run(p));
	return 0;
}

static void *leader_gone_thread(void *arg)
{
	/* Wait until the group leader has exited. */
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", getpid(), getpid());
	for (int i = 0; i < 500; i++) {
		FILE *f = fopen(path, "r");
		char line[512] = "";
		if (!f)
			break;
		fgets(line, sizeof(line), f);
		fclose(f);
		char *state = strrchr(line, ')');
		if (state && (state[2] == 'Z' || state[2] == 'X'))
			break;
		usleep(10000);
	}
	if (mprotect(arg, PAGE, PROT_READ | PROT_EXEC))
		die("mprotect");
	report("history_leader_gone", arg, run(arg));
	exit(0);
}

/* The group leader writes, drops write, and exits; another thread makes it executable. */
static int history_leader_gone(void)
{
	void *p = write_then_protect();
	pthread_t t;
	if (pthread_create(&t, NULL, leader_gone_thread, p))
		die("pthread_create");
	syscall(SYS_exit, 0); /* the leader thread only */
	return 1;
}

/* mprotect over [RW page][hole] to RX: ENOMEM, yet the first page is RX now. */
static int mprotect_partial(void)
{
	char *p = map_rw(2 * PAGE);
	if (munmap(p + PAGE, PAGE))
		die("munmap");
	memcpy(p, CODE, sizeof(CODE));
	if (mprotect(p, 2 * PAGE, PROT_READ | PROT_EXEC) == 0 || errno != ENOMEM)
		die("mprotect did not fail with ENOMEM");
	report("mprotect_partial", p, run(p));
	return 0;
}

/* mprotect over [clean read-only file][written anonymous RW] to RX in one call. */
static int mprotect_span(void)
{
	char *p = map_rw(2 * PAGE);
	/* A clean file that exists wherever this runs: this program itself. */
	int fd = open("/proc/self/exe", O_RDONLY);
	if (fd < 0)
		die("/proc/self/exe");
	if (mmap(p, PAGE, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED)
		die("mmap fixed");
	memcpy(p + PAGE, CODE, sizeof(CODE));
	if (mprotect(p, 2 * PAGE, PROT_READ | PROT_EXEC))
		die("mprotect");
	printf("mprotect_span pid=%d addr=%#lx ran=%d\n", getpid(), (unsigned long)p, run(p + PAGE));
	fflush(stdout);
	return 0;
}

/* Failing mmaps for `ms` milliseconds: records that only fill the ring buffer. */
static int flood(int ms)
{
	struct timespec start, now;
	long n = 0;

	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		for (int i = 0; i < 1000; i++, n++)
			mmap(NULL, (size_t)1 << 62, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
	fprintf(stderr, "flood: %ld failing mmaps\n", n);
	return 0;
}

/* `n` RWX anonymous mappings, 20 ms apart, each one's code run. */
static int rwx_burst(int n)
{
	for (int i = 0; i < n; i++) {
		void *p = map_rwx_code();
		report("rwx_burst", p, run(p));
		usleep(20000);
	}
	return 0;
}

/* RWX memory and an executable memfd, made and run, then kept for `secs` seconds. */
static int hold(int secs)
{
	void *p = map_rwx_code();
	report("hold_rwx", p, run(p));
	int fd = memfd_create("mw-held", 0);
	if (fd < 0 || write(fd, CODE, sizeof(CODE)) != sizeof(CODE) || ftruncate(fd, PAGE))
		die("memfd");
	void *q = mmap(NULL, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	if (q == MAP_FAILED)
		die("mmap");
	report("hold_memfd", q, run(q));
	sleep(secs);
	return 0;
}

static volatile int contention_stop;

static void *lock_holder(void *arg)
{
	size_t len = 64 << 20;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	while (!contention_stop) {
		/* Each takes the mmap lock for writing and holds it over the whole range. */
		mlock(p, len);
		munlock(p, len);
	}
	return arg;
}

/*
 * Executable memfd mappings while another thread keeps the mmap lock busy:
 * the kernel side may not be able to read the mapping's file. Each mapping's
 * code is run; the records must be WARN either way (fail closed).
 */
static int lock_contention(int n)
{
	pthread_t t;
	int fd = memfd_create("mw-contended", 0);
	if (fd < 0 || write(fd, CODE, sizeof(CODE)) != sizeof(CODE) || ftruncate(fd, PAGE))
		die("memfd");
	if (pthread_create(&t, NULL, lock_holder, NULL))
		die("pthread_create");
	usleep(20000);
	for (int i = 0; i < n; i++) {
		void *p = mmap(NULL, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED)
			die("mmap");
		report("lock_contention", p, run(p));
		void *q = map_rw(PAGE);
		memcpy(q, CODE, sizeof(CODE));
		if (mprotect(q, PAGE, PROT_READ | PROT_EXEC))
			die("mprotect");
		report("lock_contention_mprotect", q, run(q));
	}
	contention_stop = 1;
	pthread_join(t, NULL);
	return 0;
}

/*
 * System V shared memory: attached read-write, code written, then attached
 * again read-only with SHM_EXEC (shmat maps with do_mmap, past the mmap
 * tracepoints) and run there.
 */
static int shm_exec(void)
{
	int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0700);
	void *rw, *rx;

	if (id < 0)
		die("shmget");
	rw = shmat(id, NULL, 0);
	if (rw == (void *)-1)
		die("shmat");
	memcpy(rw, CODE, sizeof(CODE));
	rx = shmat(id, NULL, SHM_RDONLY | SHM_EXEC);
	if (rx == (void *)-1)
		die("shmat SHM_EXEC");
	shmctl(id, IPC_RMID, NULL);
	report("shm_exec", rx, run(rx));
	return 0;
}

/* A file written with code at `path`, closed, mapped R-X and run. */
static int map_file(const char *path)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0700);
	void *p;

	if (fd < 0 || write(fd, CODE, sizeof(CODE)) != sizeof(CODE) || close(fd))
		die(path);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path);
	p = mmap(NULL, PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	close(fd);
	report("map_file", p, run(p));
	return 0;
}

/*
 * Borrowing an exception: RWX code made and run, then, at once, execve of a
 * program an exception by executable path excuses. An agent that reads
 * /proc/PID/exe when it handles the record finds the excused program.
 */
static int launder(char **argv)
{
	void *p = map_rwx_code();
	report("launder", p, run(p));
	execv(argv[0], argv);
	die("execv");
	return 1;
}

int main(int argc, char **argv)
{
	const char *t = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(t, "rie_mmap"))
		return rie_mmap();
	if (!strcmp(t, "rie_file"))
		return rie_file();
	if (!strcmp(t, "rie_mprotect"))
		return rie_mprotect();
	if (!strcmp(t, "rie_brk"))
		return rie_brk();
	if (!strcmp(t, "devzero"))
		return devzero();
	if (!strcmp(t, "shared_anon"))
		return shared_anon();
	if (!strcmp(t, "history_flood"))
		return history_flood(argc > 2 ? atoi(argv[2]) : 64);
	if (!strcmp(t, "history_fork"))
		return history_fork();
	if (!strcmp(t, "history_vfork"))
		return history_vfork();
	if (!strcmp(t, "history_vfork_writer"))
		return history_vfork_writer();
	if (!strcmp(t, "history_leader_gone"))
		return history_leader_gone();
	if (!strcmp(t, "hold"))
		return hold(argc > 2 ? atoi(argv[2]) : 30);
	if (!strcmp(t, "flood"))
		return flood(argc > 2 ? atoi(argv[2]) : 1000);
	if (!strcmp(t, "rwx_burst"))
		return rwx_burst(argc > 2 ? atoi(argv[2]) : 10);
	if (!strcmp(t, "mprotect_partial"))
		return mprotect_partial();
	if (!strcmp(t, "mprotect_span"))
		return mprotect_span();
	if (!strcmp(t, "lock_contention"))
		return lock_contention(argc > 2 ? atoi(argv[2]) : 20);
	if (!strcmp(t, "shm_exec"))
		return shm_exec();
	if (!strcmp(t, "map_file") && argc > 2)
		return map_file(argv[2]);
	if (!strcmp(t, "launder") && argc > 2)
		return launder(argv + 2);
	fprintf(stderr, "unknown technique %s\n", t);
	return 2;
}
