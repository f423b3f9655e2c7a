// SPDX-License-Identifier: MIT
/*
 * The dump-latency baseline: a minimal C program that loads a CO-RE
 * task_file iterator with libbpf, attaches it to one process (PID), reads it
 * once and prints how many bytes it read.
 * Usage: task_file_min PID OBJECT [PROGRAM [UNLOADED...]] (PROGRAM defaults
 * to read_fds; the UNLOADED programs' autoload is turned off, as ringplan
 * leaves its walks' program unloaded until a ring needs it)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

int main(int argc, char **argv)
{
	union bpf_iter_link_info link_info;
	struct bpf_object *object;
	struct bpf_program *program;
	struct bpf_link *link;
	char buffer[16384];
	size_t total = 0;
	ssize_t got;
	int iterator;

	if (argc < 3) {
		fprintf(stderr, "usage: %s PID OBJECT [PROGRAM [UNLOADED...]]\n", argv[0]);
		return 2;
	}
	object = bpf_object__open_file(argv[2], NULL);
	for (int i = 4; object && i < argc; i++) {
		struct bpf_program *unloaded = bpf_object__find_program_by_name(object, argv[i]);
		if (!unloaded || bpf_program__set_autoload(unloaded, false)) {
			fprintf(stderr, "no program %s in %s\n", argv[i], argv[2]);
			return 1;
		}
	}
	if (!object || bpf_object__load(object)) {
		fprintf(stderr, "loading %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	program = bpf_object__find_program_by_name(object, argc >= 4 ? argv[3] : "read_fds");
	memset(&link_info, 0, sizeof(link_info));
	link_info.task.pid = (unsigned int)atoi(argv[1]);
	LIBBPF_OPTS(bpf_iter_attach_opts, options, .link_info = &link_info, .link_info_len = sizeof(link_info));
	link = program ? bpf_program__attach_iter(program, &options) : NULL;
	if (!link) {
		fprintf(stderr, "attaching: %s\n", strerror(errno));
		return 1;
	}
	iterator = bpf_iter_create(bpf_link__fd(link));
	if (iterator < 0) {
		fprintf(stderr, "creating the iterator: %s\n", strerror(errno));
		return 1;
	}
	while ((got = read(iterator, buffer, sizeof(buffer))) > 0)
		total += (size_t)got;
	if (got < 0) {
		fprintf(stderr, "reading the iterator: %s\n", strerror(errno));
		return 1;
	}
	printf("%zu\n", total);
	close(iterator);
	bpf_link__destroy(link);
	bpf_object__close(object);
	return 0;
}
