/* SPDX-License-Identifier: Apache-2.0 */
/* Whole-file helpers for config, token, registry and key files: bounded
 * reads (into sodium_malloc memory for keys) and atomic writes. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include <weft/file.h>

static void file_free_plain(void *p)
{
	free(p);
}

/* The whole file in memory from alloc (released with release on error). */
static int file_read_with(const char *path, size_t max, void *(*alloc)(size_t),
			  void (*release)(void *), char **buf, size_t *len)
{
	struct stat st;
	size_t got = 0;
	char *b;
	int fd, err;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		err = -errno;
		goto fail_fd;
	}
	if ((size_t)st.st_size > max) {
		err = -EFBIG;
		goto fail_fd;
	}
	b = alloc(st.st_size + 1);
	if (!b) {
		err = -ENOMEM;
		goto fail_fd;
	}
	/* The file may change under us (editors, rename): read what is there
	 * up to the size seen, never past the bound. */
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			release(b);
			goto fail_fd;
		}
		if (n == 0)
			break;
		got += n;
	}
	close(fd);
	b[got] = 0;
	*buf = b;
	*len = got;
	return 0;
fail_fd:
	close(fd);
	return err;
}

int file_read(const char *path, size_t max, char **buf, size_t *len)
{
	return file_read_with(path, max, malloc, file_free_plain, buf, len);
}

int file_read_secret(const char *path, size_t max, char **buf, size_t *len)
{
	/* sodium_malloc needs sodium_init; it is idempotent. */
	if (sodium_init() < 0)
		return -ENOMEM;
	return file_read_with(path, max, sodium_malloc, sodium_free, buf, len);
}

/* fsync the directory holding path, so that the rename survives a crash. */
static int file_sync_dir(const char *path)
{
	char dir[4096] = ".";
	const char *slash = strrchr(path, '/');
	int fd, err = 0;

	if (slash) {
		size_t n = slash == path ? 1 : (size_t)(slash - path);	/* "/f": the root */

		if (n >= sizeof(dir))
			return -ENAMETOOLONG;
		memcpy(dir, path, n);
		dir[n] = 0;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		err = -errno;
	close(fd);
	return err;
}

/* A fresh temp file next to path, "<path>.tmp.<16 random hex>". The name
 * is unpredictable and opened O_EXCL|O_NOFOLLOW, so someone who can write
 * to the directory cannot plant a symlink or a file there that makes a
 * root process write elsewhere. fd or -errno; tmp holds the name. */
static int file_tmp_open(const char *path, mode_t mode, char *tmp, size_t tmplen)
{
	if (sodium_init() < 0)
		return -ENOMEM;
	/* A clash is 2^-64 unless someone plants names; a few tries then. */
	for (int i = 0; i < 8; i++) {
		unsigned char rnd[8];
		char hex[2 * sizeof(rnd) + 1];
		int fd;

		randombytes_buf(rnd, sizeof(rnd));
		sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
		if (snprintf(tmp, tmplen, "%s.tmp.%s", path, hex) >= (int)tmplen)
			return -ENAMETOOLONG;
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd >= 0 || errno != EEXIST)
			return fd >= 0 ? fd : -errno;
	}
	return -EEXIST;
}

int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[4096];
	const char *p = data;
	int fd, err = 0;

	fd = file_tmp_open(path, mode, tmp, sizeof(tmp));
	if (fd < 0)
		return fd;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			break;
		}
		p += n;
		len -= n;
	}
	/* open() applied the umask; the caller's mode is what counts. */
	if (!err && fchmod(fd, mode))
		err = -errno;
	if (!err && fsync(fd))
		err = -errno;
	if (close(fd) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err) {
		unlink(tmp);
		return err;
	}
	return file_sync_dir(path);
}
