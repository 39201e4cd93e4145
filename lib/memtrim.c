/* SPDX-License-Identifier: Apache-2.0 */
/* memtrim.h: /proc/self/smaps, one mapping at a time. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <weft/memtrim.h>

struct memtrim_vma {
	uintptr_t start, end;
	int candidate;			/* r-?p, file-backed */
	size_t rss, dirty, anon, locked, swap;
};

static size_t memtrim_vma_end(const struct memtrim_vma *v)
{
	/* A written (COW) page that went to swap shows only as Swap: one
	 * swapped page makes the whole mapping untouchable, or the drop
	 * would bring back the file's bytes in place of ours. */
	if (!v->candidate || !v->rss || v->dirty || v->anon || v->locked || v->swap)
		return 0;
	if (madvise((void *)v->start, v->end - v->start, MADV_DONTNEED) != 0)
		return 0;
	return v->rss;
}

/* "Private_Dirty:      12 kB": the number, if line is field. */
static int memtrim_field(const char *line, const char *field, size_t *out)
{
	size_t n = strlen(field);
	unsigned long v;

	if (strncmp(line, field, n) != 0 || sscanf(line + n, " %lu", &v) != 1)
		return 0;
	*out = v;
	return 1;
}

size_t memtrim_clean_files(void)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	struct memtrim_vma v = { 0 };
	char line[512];
	size_t dropped = 0, x;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		uintptr_t a, b;
		char perms[8];
		unsigned long long off, inode;
		char dev[16];
		int n = 0;

		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %llx %15s %llu %n", &a, &b, perms,
			   &off, dev, &inode, &n) == 6) {
			dropped += memtrim_vma_end(&v);
			v = (struct memtrim_vma){ .start = a, .end = b };
			/* Readable, never writable, private, backed by a file. */
			v.candidate = perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p' &&
				      inode != 0 && line[n] == '/';
			continue;
		}
		if (memtrim_field(line, "Rss:", &x))
			v.rss = x;
		else if (memtrim_field(line, "Private_Dirty:", &x) ||
			 memtrim_field(line, "Shared_Dirty:", &x))
			v.dirty += x;
		else if (memtrim_field(line, "Anonymous:", &x))
			v.anon = x;
		else if (memtrim_field(line, "Locked:", &x))
			v.locked = x;
		else if (memtrim_field(line, "Swap:", &x) || memtrim_field(line, "SwapPss:", &x))
			v.swap += x;
	}
	dropped += memtrim_vma_end(&v);
	fclose(f);
	return dropped;
}
