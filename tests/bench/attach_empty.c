// SPDX-License-Identifier: GPL-2.0-only
/*
 * Loads empty.bpf.o, attaches its program and holds the link until SIGTERM
 * or SIGINT. Prints "attached" on stdout once the program is live. (bpftool
 * 7.1's "prog load ... autoattach" cannot do this.)
 *
 * Build: cc -O2 -o attach_empty attach_empty.c -lbpf
 * Usage: attach_empty PATH/empty.bpf.o
 */
#include <bpf/libbpf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static int quiet(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, args) : 0;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_link *link;
	sigset_t set;
	int sig, err;

	if (argc != 2) {
		fprintf(stderr, "usage: attach_empty EMPTY.BPF.O\n");
		return 2;
	}
	libbpf_set_print(quiet);
	/* Block the stop signals first: one sent during setup waits for sigwait. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);

	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "attach_empty: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	err = bpf_object__load(obj);
	if (err) {
		fprintf(stderr, "attach_empty: load: %s\n", strerror(-err));
		return 1;
	}
	prog = bpf_object__find_program_by_name(obj, "empty_send_length");
	if (!prog) {
		fprintf(stderr, "attach_empty: no program empty_send_length\n");
		return 1;
	}
	link = bpf_program__attach(prog);
	if (!link) {
		fprintf(stderr, "attach_empty: attach: %s\n", strerror(errno));
		return 1;
	}
	printf("attached\n");
	fflush(stdout);
	sigwait(&set, &sig);
	bpf_link__destroy(link);
	bpf_object__close(obj);
	return 0;
}
