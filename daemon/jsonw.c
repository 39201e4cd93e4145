/* SPDX-License-Identifier: Apache-2.0 */
/* JSON writer (jsonw.h). */
#include <stdarg.h>
#include <stdio.h>

#include "jsonw.h"

void jw_put(struct jw *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(w->buf + w->o, w->o < w->len ? w->len - w->o : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		w->o += (size_t)n;
}

void jw_str(struct jw *w, const char *s)
{
	jw_put(w, "\"");
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			jw_put(w, "\\%c", c);
		else if (c < 0x20)
			jw_put(w, "\\u%04x", c);
		else
			jw_put(w, "%c", c);
	}
	jw_put(w, "\"");
}

size_t jw_end(const struct jw *w)
{
	return w->o < w->len ? w->o : w->len;
}
