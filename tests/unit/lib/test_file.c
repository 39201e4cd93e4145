/* SPDX-License-Identifier: Apache-2.0 */
/* file_write_atomic: content and mode land, and no symlink planted at a
 * temp name (the old predictable "<path>.tmp.<pid>", or the very name the
 * random suffix will produce) or at the path itself is followed. The
 * random source is replaced (randombytes_set_implementation) so the test
 * knows the first temp name and can plant a symlink exactly there. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "../check.h"
#include <weft/file.h>

/* A scripted random source: the first fill is all 0xab, later ones count
 * up, so the test can predict the first two temp names. */
static unsigned fake_calls;

static const char *fake_name(void)
{
	return "fake";
}

static uint32_t fake_random(void)
{
	return 4;
}

static void fake_buf(void *const buf, const size_t size)
{
	memset(buf, fake_calls ? (int)(fake_calls & 0xff) : 0xab, size);
	fake_calls++;
}

static struct randombytes_implementation fake_rng = {
	.implementation_name = fake_name,
	.random = fake_random,
	.buf = fake_buf,
};

static char dir[PATH_MAX];

static void slurp(const char *path, char *out, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, out, len - 1);

	out[n > 0 ? n : 0] = 0;
	if (fd >= 0)
		close(fd);
}

static void put(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	CHECK(fd >= 0 && write(fd, s, strlen(s)) == (ssize_t)strlen(s));
	if (fd >= 0)
		close(fd);
}

/* Temp files left in dir: names with ".tmp." that are not the symlinks
 * the test planted. */
static int leftover_tmps(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)))
		if (strstr(de->d_name, ".tmp.") && de->d_type != DT_LNK)
			n++;
	if (d)
		closedir(d);
	return n;
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	return lstat(path, &st) ? (mode_t)-1 : st.st_mode;
}

int main(void)
{
	char path[PATH_MAX + 32], victim[PATH_MAX + 32], planted[PATH_MAX + 64];
	char created[PATH_MAX + 32], buf[256];
	char hex[17];
	unsigned char first[8];

	/* Before sodium_init, which file_write_atomic calls. */
	CHECK_EQ_INT(randombytes_set_implementation(&fake_rng), 0);
	snprintf(dir, sizeof(dir), "/tmp/weft-test-file.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	umask(077);
	snprintf(path, sizeof(path), "%s/state.pb", dir);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	snprintf(created, sizeof(created), "%s/created", dir);
	put(victim, "ORIGINAL");

	/* 1. A symlink at the old predictable name (pid-based) and one at the
	 * exact first random name, both pointing at files an attacker wants
	 * written: neither is followed, the second name is used. */
	snprintf(planted, sizeof(planted), "%s.tmp.%d", path, (int)getpid());
	CHECK_EQ_INT(symlink(victim, planted), 0);
	memset(first, 0xab, sizeof(first));
	sodium_bin2hex(hex, sizeof(hex), first, sizeof(first));
	snprintf(planted, sizeof(planted), "%s.tmp.%s", path, hex);
	CHECK_EQ_INT(symlink(created, planted), 0);
	fake_calls = 0;
	CHECK_EQ_INT(file_write_atomic(path, "hello\n", 6, 0640), 0);
	CHECK_EQ_INT(fake_calls, 2);		/* EEXIST on the planted name, then a fresh one */
	slurp(path, buf, sizeof(buf));
	CHECK_EQ_STR(buf, "hello\n");
	CHECK_EQ_INT(mode_of(path) & 07777, 0640);	/* not the umask's 0600 */
	CHECK(S_ISREG(mode_of(path)));
	slurp(victim, buf, sizeof(buf));
	CHECK_EQ_STR(buf, "ORIGINAL");
	CHECK_EQ_INT(access(created, F_OK) < 0 && errno == ENOENT, 1);
	CHECK(S_ISLNK(mode_of(planted)));		/* left as it was */
	CHECK_EQ_INT(leftover_tmps(), 0);

	/* 2. Overwrite: new content, the new mode, still no temp left. */
	CHECK_EQ_INT(file_write_atomic(path, "second", 6, 0600), 0);
	slurp(path, buf, sizeof(buf));
	CHECK_EQ_STR(buf, "second");
	CHECK_EQ_INT(mode_of(path) & 07777, 0600);
	CHECK_EQ_INT(file_write_atomic(path, "", 0, 0644), 0);
	slurp(path, buf, sizeof(buf));
	CHECK_EQ_STR(buf, "");
	CHECK_EQ_INT(mode_of(path) & 07777, 0644);
	CHECK_EQ_INT(leftover_tmps(), 0);

	/* 3. Every name the eight tries produce planted (0xab.., then 01..,
	 * 02.., .. 07..): the write gives up with EEXIST rather than follow
	 * one, and writes nothing anywhere. */
	{
		char p2[PATH_MAX + 32];

		snprintf(p2, sizeof(p2), "%s/other", dir);
		for (unsigned k = 0; k < 8; k++) {
			unsigned char b[8];
			char h[17], l[PATH_MAX + 64];

			memset(b, k ? (int)k : 0xab, sizeof(b));
			sodium_bin2hex(h, sizeof(h), b, sizeof(b));
			snprintf(l, sizeof(l), "%s.tmp.%s", p2, h);
			CHECK_EQ_INT(symlink(created, l), 0);
		}
		fake_calls = 0;
		CHECK_EQ_INT(file_write_atomic(p2, "x", 1, 0600), -EEXIST);
		CHECK_EQ_INT(fake_calls, 8);
		CHECK_EQ_INT(access(created, F_OK) < 0 && errno == ENOENT, 1);
		CHECK_EQ_INT(access(p2, F_OK) < 0 && errno == ENOENT, 1);
	}

	/* 4. path itself a symlink to the victim: replaced, not followed. */
	{
		char p3[PATH_MAX + 32];

		snprintf(p3, sizeof(p3), "%s/link", dir);
		CHECK_EQ_INT(symlink(victim, p3), 0);
		CHECK_EQ_INT(file_write_atomic(p3, "new", 3, 0600), 0);
		CHECK(S_ISREG(mode_of(p3)));
		slurp(p3, buf, sizeof(buf));
		CHECK_EQ_STR(buf, "new");
		slurp(victim, buf, sizeof(buf));
		CHECK_EQ_STR(buf, "ORIGINAL");
	}

	/* 5. A bare name (no directory part) and a missing directory. */
	CHECK_EQ_INT(chdir(dir), 0);
	CHECK_EQ_INT(file_write_atomic("bare", "b", 1, 0600), 0);
	slurp("bare", buf, sizeof(buf));
	CHECK_EQ_STR(buf, "b");
	CHECK_EQ_INT(file_write_atomic("nodir/x", "b", 1, 0600), -ENOENT);

	/* Clean up the directory (names only: nothing in it is followed). */
	{
		DIR *d = opendir(dir);
		struct dirent *de;

		while (d && (de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(dirfd(d), de->d_name, 0);
		if (d)
			closedir(d);
		CHECK_EQ_INT(chdir("/"), 0);
		rmdir(dir);
	}
	return check_done("test_file");
}
