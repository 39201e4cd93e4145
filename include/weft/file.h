/* SPDX-License-Identifier: Apache-2.0 */
/* Whole-file reads with a size bound, and atomic writes (tmp + rename). */
#ifndef WEFT_FILE_H
#define WEFT_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Read path into a malloc'd, NUL-terminated buffer. 0, -EFBIG past max, or
 * -errno. */
int file_read(const char *path, size_t max, char **buf, size_t *len);
/* The same into sodium_malloc memory (guarded, never swapped), for key
 * files; release with sodium_free or x509_secret_free. */
int file_read_secret(const char *path, size_t max, char **buf, size_t *len);
/* Write data to path atomically with the given mode: an unpredictable
 * temp name opened O_EXCL|O_NOFOLLOW next to it, fsync, rename, fsync of
 * the directory. A symlink at path is replaced, not followed. 0 or -errno. */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

#endif
