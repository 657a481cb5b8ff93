/* Runs a program where io_uring is refused, as Docker's default seccomp profile refuses it:
 * io_uring_setup, io_uring_enter and io_uring_register fail with EPERM, everything else is
 * allowed. For the tests of the node's fallback to epoll (tests/e2e/test_io_backend.py,
 * test_reactor --uring-refused).
 *
 * usage: no_uring PROGRAM [ARGS...]
 *
 * A hand-written classic BPF filter: no_new_privs first (what lets an unprivileged process
 * install one), then seccomp(SECCOMP_SET_MODE_FILTER); the filter survives the exec. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "no_uring: add this architecture's AUDIT_ARCH_ value"
#endif

#define REFUSE(nr)                                                                                 \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),                                           \
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROGRAM [ARGS...]\n", argv[0]);
		return 2;
	}
	struct sock_filter filter[] = {
		/* Another architecture's numbers mean other calls: kill rather than guess. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		REFUSE(__NR_io_uring_setup),
		REFUSE(__NR_io_uring_enter),
		REFUSE(__NR_io_uring_register),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		fprintf(stderr, "no_uring: prctl(PR_SET_NO_NEW_PRIVS): %s\n", strerror(errno));
		return 2;
	}
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
		fprintf(stderr, "no_uring: seccomp: %s\n", strerror(errno));
		return 2;
	}
	execvp(argv[1], argv + 1);
	fprintf(stderr, "no_uring: cannot run %s: %s\n", argv[1], strerror(errno));
	return 127;
}
