/* SPDX-License-Identifier: Apache-2.0 */
/* Test shim (LD_PRELOAD): a slow disk. Every fsync and fdatasync sleeps
 * WEFT_TEST_FSYNC_MS milliseconds first, and appends "<pid> <tid> <ms>" to
 * WEFT_TEST_FSYNC_LOG, so a test can see which thread waited on the disk
 * (tid == pid: the main thread, weftd's event loop). Used by
 * tests/integration/test_dp_slow_disk.py. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void slow(void)
{
	const char *ms = getenv("WEFT_TEST_FSYNC_MS"), *path = getenv("WEFT_TEST_FSYNC_LOG");
	long n = ms ? strtol(ms, NULL, 10) : 0;
	struct timespec ts = { .tv_sec = n / 1000, .tv_nsec = (n % 1000) * 1000000L };
	char line[64];
	int fd, len;

	if (n > 0)
		nanosleep(&ts, NULL);
	if (!path)
		return;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	len = snprintf(line, sizeof(line), "%d %d %ld\n", (int)getpid(), (int)gettid(), n);
	if (write(fd, line, (size_t)len) < 0)
		len = 0;
	close(fd);
}

int fsync(int fd)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");

	slow();
	return real(fd);
}

int fdatasync(int fd)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");

	slow();
	return real(fd);
}
