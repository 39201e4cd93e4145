/* SPDX-License-Identifier: Apache-2.0 */
/* The "err, errlen" convention of weft-cni's modules: a failing call
 * describes itself in the caller's buffer, which may be NULL. */
#ifndef CNI_CNIERR_H
#define CNI_CNIERR_H

#include <stddef.h>

/* printf into err (errlen bytes, truncated); nothing when err is NULL or
 * errlen is 0. */
void cnierr_set(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
