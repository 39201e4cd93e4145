/* SPDX-License-Identifier: Apache-2.0 */
/* memtrim_clean_files: a read-only file mapping whose pages were read is
 * dropped from RSS and reads the same after; a private writable mapping
 * that was written, and anonymous memory, keep every byte. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <weft/memtrim.h>

#include "../check.h"

#define SZ (2u << 20)

/* Resident KiB of the mapping that starts at p (from smaps). */
static long rss_of(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512], want[32];
	int in = 0;
	long r = -1;

	snprintf(want, sizeof(want), "%lx-", (unsigned long)p);
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long a, b;

		if (sscanf(line, "%lx-%lx ", &a, &b) == 2) {
			in = strncmp(line, want, strlen(want)) == 0;
			continue;
		}
		if (in && sscanf(line, "Rss: %ld", &r) == 1)
			in = 0;
	}
	if (f)
		fclose(f);
	return r;
}

int main(void)
{
	char path[] = "/tmp/weft-memtrim-XXXXXX";
	int fd = mkstemp(path);
	unsigned char *buf = malloc(SZ), *ro, *rw, *anon;
	unsigned long sum = 0, sum2 = 0;
	size_t dropped;

	CHECK(fd >= 0 && buf);
	for (size_t i = 0; i < SZ; i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	CHECK_EQ_INT(write(fd, buf, SZ), (long)SZ);
	/* Written back: page-cache pages still dirty count as dirty in smaps,
	 * and those are never dropped. */
	CHECK_EQ_INT(fsync(fd), 0);
	ro = mmap(NULL, SZ, PROT_READ, MAP_PRIVATE, fd, 0);
	rw = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	anon = mmap(NULL, SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ro != MAP_FAILED && rw != MAP_FAILED && anon != MAP_FAILED);
	for (size_t i = 0; i < SZ; i += 4096) {
		sum += ro[i];
		rw[i] ^= 0xff;
		anon[i] = 0x5a;
	}
	CHECK(rss_of(ro) >= (long)(SZ / 1024) - 64);

	dropped = memtrim_clean_files();
	CHECK(dropped >= SZ / 1024 - 64);
	CHECK(rss_of(ro) < 64);
	/* The same bytes come back from the page cache. */
	for (size_t i = 0; i < SZ; i += 4096)
		sum2 += ro[i];
	CHECK_EQ_INT(sum2, sum);
	CHECK(memcmp(ro, buf, SZ) == 0);
	/* Written pages are untouched: still ours, still changed. */
	for (size_t i = 0, bad = 0; i < SZ; i += 4096) {
		bad += rw[i] != (unsigned char)(buf[i] ^ 0xff) || anon[i] != 0x5a;
		if (i + 4096 >= SZ)
			CHECK_EQ_INT(bad, 0);
	}
	munmap(ro, SZ);
	munmap(rw, SZ);
	munmap(anon, SZ);
	close(fd);
	unlink(path);
	free(buf);
	return check_done("test_memtrim");
}
