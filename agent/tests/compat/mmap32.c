/*
 * A 32-bit (i386) workload for agent/tests/compat.rs, built with
 * `gcc -m32 -static` by agent/build.rs. It maps, through the i386 syscalls:
 *   mmap2     192: the file argv[1] executable (PROT_READ|PROT_EXEC, page 0)
 *   mmap2     192: anonymous memory read+write+exec
 *   old_mmap   90: the file again, executable, from page 1 (its struct argument)
 *   mprotect  125: the anonymous memory to read-only
 * and prints, for each mapping, what it asked and what it got, then its own
 * /proc/self/maps line for the returned address (the ground truth):
 *   <name> <addr> <len> <prot> <pgoff> | <maps line>
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
#define MAP_PRIVATE 2
#define MAP_ANONYMOUS 0x20

struct old_mmap_args {
	unsigned long addr, len, prot, flags, fd, offset;
};

static void maps_line(unsigned long addr, char *out, size_t size)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");

	snprintf(out, size, "none");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;

		if (sscanf(line, "%lx-%lx", &start, &end) == 2 && start <= addr && addr < end) {
			line[strcspn(line, "\n")] = 0;
			snprintf(out, size, "%s", line);
			break;
		}
	}
	fclose(f);
}

static void report(const char *name, long ret, unsigned long len, unsigned long prot,
		   unsigned long pgoff)
{
	char line[512];

	if ((unsigned long)ret >= (unsigned long)-4095) {
		fprintf(stderr, "%s failed: %ld\n", name, ret);
		exit(1);
	}
	maps_line((unsigned long)ret, line, sizeof(line));
	printf("%s %lu %lu %lu %lu | %s\n", name, (unsigned long)ret, len, prot, pgoff, line);
}

int main(int argc, char **argv)
{
	struct old_mmap_args args;
	long file_exec, anon, old;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: %s FILE (at least 2 pages)\n", argv[0]);
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0) {
		perror("open");
		return 1;
	}
	file_exec = syscall(SYS_mmap2, 0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	report("mmap2_file", file_exec, 4096, PROT_READ | PROT_EXEC, 0);
	anon = syscall(SYS_mmap2, 0, 8192, PROT_READ | PROT_WRITE | PROT_EXEC,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	report("mmap2_anon", anon, 8192, PROT_READ | PROT_WRITE | PROT_EXEC, 0);
	args.addr = 0;
	args.len = 4096;
	args.prot = PROT_READ | PROT_EXEC;
	args.flags = MAP_PRIVATE;
	args.fd = fd;
	args.offset = 4096;
	old = syscall(SYS_mmap, &args); /* i386 90: old_mmap(struct mmap_arg_struct *) */
	report("old_mmap_file", old, 4096, PROT_READ | PROT_EXEC, 1);
	if (syscall(SYS_mprotect, anon, 8192, PROT_READ)) {
		perror("mprotect");
		return 1;
	}
	printf("mprotect %lu\n", (unsigned long)anon);
	fflush(stdout);
	return 0;
}
