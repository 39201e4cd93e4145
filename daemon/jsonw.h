/* SPDX-License-Identifier: Apache-2.0 */
/* A JSON writer into a fixed buffer for the admin API's answers: appends
 * as snprintf does (what does not fit is cut, the length counts on), and
 * strings escaped (quotes, backslashes, control bytes). */
#ifndef DAEMON_JSONW_H
#define DAEMON_JSONW_H

#include <stddef.h>

struct jw {
	char *buf;
	size_t len, o;
};

void jw_put(struct jw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a quoted JSON string (NULL as ""). */
void jw_str(struct jw *w, const char *s);
/* The bytes written, len when the output was cut. */
size_t jw_end(const struct jw *w);

#endif
