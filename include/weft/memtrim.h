/* SPDX-License-Identifier: Apache-2.0 */
/* Give back the file pages this process has mapped but does not use: the
 * text and read-only data of its libraries that start-up touched once
 * (OpenSSL's initialisation alone maps ~2 MB of libcrypto, most of it by
 * the kernel's fault-around) and that stay in the page tables, counted in
 * RSS, though nothing runs them again. */
#ifndef WEFT_MEMTRIM_H
#define WEFT_MEMTRIM_H

#include <stddef.h>

/* Every private, read-only, file-backed mapping with no dirty, anonymous,
 * swapped or locked page is dropped from the page tables (MADV_DONTNEED):
 * its pages stay in the page cache, shared, and what is used again faults
 * back in (a minor fault, from memory). A mapping with a page that was ever
 * written (relocated data, COW), resident or swapped, is never touched.
 * The smaps snapshot must still be true at the madvise: never call this
 * while another thread may dlopen (ld.so maps and relocates): weftd loads
 * nothing after start-up. Slow (it reads /proc/self/smaps): call it from a
 * thread that may block. Returns the KiB dropped. */
size_t memtrim_clean_files(void);

#endif
