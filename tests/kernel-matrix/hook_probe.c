// egressd-hook-probe: loads each program of a BPF object on its own, attaches
// it, detaches it, and says which ones this kernel refuses and why.
//
//   egressd-hook-probe [--cgroup DIR] [--tail N] OBJECT...
//
// For every object, one line for its maps and one per program:
//   maps <object> load=ok|FAIL
//   prog <object> <program> <section> load=ok|FAIL attach=ok|FAIL|- [error]
// and after a failure the last N (12) lines libbpf and the verifier printed,
// each starting with "  | ". A program is loaded with every other program of
// its object switched off, so one refusal does not hide the others. Cgroup
// programs attach to DIR (/sys/fs/cgroup). Exit status: 0 when everything
// loaded and attached, 1 otherwise, 2 on bad usage.
//
// The kernel test matrix (tests/kernel-matrix/matrix.sh) runs it in each VM on
// egressd's own object and on hooks.bpf.o, one program per kind of hook.
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// libbpf's messages (not its debug chatter) for the step being tried.
static char messages[1 << 20];
static size_t messages_len;

static int collect(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	if (messages_len > sizeof(messages) - 4096) {
		// Keep the newer half: the reason is at the end of a verifier log.
		size_t half = sizeof(messages) / 2;
		memmove(messages, messages + messages_len - half, half);
		messages_len = half;
	}
	int n = vsnprintf(messages + messages_len, sizeof(messages) - messages_len, fmt, args);
	if (n > 0)
		messages_len += (size_t)n < sizeof(messages) - messages_len ? (size_t)n
									: sizeof(messages) - messages_len - 1;
	return 0;
}

static void print_tail(int lines)
{
	int seen = 0;
	size_t start = messages_len;
	while (start > 0) {
		if (messages[start - 1] == '\n' && start != messages_len && ++seen == lines)
			break;
		start--;
	}
	const char *line = messages + start;
	while (line < messages + messages_len) {
		const char *end = memchr(line, '\n', messages + messages_len - line);
		size_t len = end ? (size_t)(end - line) : (size_t)(messages + messages_len - line);
		if (len)
			printf("  | %.*s\n", (int)len, line);
		line += len + 1;
	}
}

static int attach(struct bpf_program *prog, int cgroup_fd, struct bpf_link **link)
{
	switch (bpf_program__type(prog)) {
	case BPF_PROG_TYPE_CGROUP_SKB:
	case BPF_PROG_TYPE_CGROUP_SOCK:
	case BPF_PROG_TYPE_CGROUP_SOCK_ADDR:
	case BPF_PROG_TYPE_CGROUP_SOCKOPT:
	case BPF_PROG_TYPE_CGROUP_SYSCTL:
	case BPF_PROG_TYPE_CGROUP_DEVICE:
	case BPF_PROG_TYPE_SOCK_OPS:
		*link = bpf_program__attach_cgroup(prog, cgroup_fd);
		break;
	default:
		if (bpf_program__expected_attach_type(prog) == BPF_TRACE_ITER)
			*link = bpf_program__attach_iter(prog, NULL);
		else
			*link = bpf_program__attach(prog);
	}
	return *link ? 0 : -errno;
}

// Opens path with only the program called only switched on (none: NULL).
static struct bpf_object *open_with(const char *path, const char *only)
{
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj)
		return NULL;
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, obj)
		bpf_program__set_autoload(prog, only && strcmp(bpf_program__name(prog), only) == 0);
	return obj;
}

static int probe_object(const char *path, int cgroup_fd, int tail)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	messages_len = 0;
	struct bpf_object *obj = open_with(path, NULL);
	if (!obj) {
		printf("open %s FAIL %s\n", base, strerror(errno));
		print_tail(tail);
		return 1;
	}
	int err = bpf_object__load(obj);
	printf("maps %s load=%s%s\n", base, err ? "FAIL " : "ok", err ? strerror(-err) : "");
	if (err) {
		print_tail(tail);
		bpf_object__close(obj);
		return 1;
	}

	// The names first: each program is then tried in an object of its own.
	char *names[256];
	int count = 0, failed = 0;
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, obj)
		if (count < 256)
			names[count++] = strdup(bpf_program__name(prog));
	bpf_object__close(obj);

	for (int i = 0; i < count; i++) {
		messages_len = 0;
		obj = open_with(path, names[i]);
		prog = obj ? bpf_object__find_program_by_name(obj, names[i]) : NULL;
		if (!prog) {
			printf("prog %s %s ? load=FAIL cannot reopen the object\n", base, names[i]);
			failed++;
			continue;
		}
		const char *section = bpf_program__section_name(prog);
		err = bpf_object__load(obj);
		if (err) {
			printf("prog %s %s %s load=FAIL attach=- %s\n", base, names[i], section, strerror(-err));
			print_tail(tail);
			failed++;
		} else {
			struct bpf_link *link = NULL;
			err = attach(prog, cgroup_fd, &link);
			printf("prog %s %s %s load=ok attach=%s%s\n", base, names[i], section, err ? "FAIL " : "ok",
			       err ? strerror(-err) : "");
			if (err) {
				print_tail(tail);
				failed++;
			}
			bpf_link__destroy(link);
		}
		bpf_object__close(obj);
		free(names[i]);
	}
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *cgroup = "/sys/fs/cgroup";
	int tail = 12, i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (i + 1 >= argc)
			break;
		if (strcmp(argv[i], "--cgroup") == 0)
			cgroup = argv[i + 1];
		else if (strcmp(argv[i], "--tail") == 0)
			tail = atoi(argv[i + 1]);
		else
			break;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: %s [--cgroup DIR] [--tail N] OBJECT...\n", argv[0]);
		return 2;
	}
	libbpf_set_print(collect);
	int cgroup_fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgroup_fd < 0)
		printf("cgroup %s: %s (cgroup programs will not attach)\n", cgroup, strerror(errno));
	int status = 0;
	for (; i < argc; i++)
		status |= probe_object(argv[i], cgroup_fd, tail);
	fflush(stdout);
	return status;
}
