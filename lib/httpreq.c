/* SPDX-License-Identifier: Apache-2.0 */
/* The request line of weft's small HTTP/1.1 endpoints (httpreq.h). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <weft/httpreq.h>

/* "METHOD /path HTTP/1.x" at its longest. */
#define HTTPREQ_LINE_MAX (HTTPREQ_METHOD_MAX - 1 + 1 + HTTPREQ_PATH_MAX - 1 + 9)

static int httpreq_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

enum httpreq httpreq_parse(const char *buf, size_t len, char method[HTTPREQ_METHOD_MAX],
			     char path[HTTPREQ_PATH_MAX])
{
	const char *eol = memchr(buf, '\n', len);
	size_t line = eol ? (size_t)(eol - buf) : len, i = 0, m, p0, pl;

	/* A CR is the line's end only before its LF (or the last byte so far). */
	if (line && buf[line - 1] == '\r' && (eol || line == len))
		line--;
	for (size_t k = 0; k < line; k++)
		if (httpreq_ctl((unsigned char)buf[k]))
			return HTTPREQ_BAD;
	if (line > HTTPREQ_LINE_MAX)
		return HTTPREQ_BAD;
	if (!eol)
		return HTTPREQ_MORE;
	if (!memmem(buf, len, "\r\n\r\n", 4) && !memmem(buf, len, "\n\n", 2))
		return HTTPREQ_MORE;
	while (i < line && buf[i] >= 'A' && buf[i] <= 'Z')
		i++;
	m = i;
	if (!m || m >= HTTPREQ_METHOD_MAX || i >= line || buf[i] != ' ')
		return HTTPREQ_BAD;
	p0 = ++i;
	while (i < line && buf[i] != ' ')
		i++;
	pl = i - p0;
	if (!pl || pl >= HTTPREQ_PATH_MAX || buf[p0] != '/')
		return HTTPREQ_BAD;
	for (size_t k = p0; k < p0 + pl; k++)
		if ((unsigned char)buf[k] > 0x7e)
			return HTTPREQ_BAD;
	if (line - i != 9 || memcmp(buf + i, " HTTP/1.", 8) || buf[i + 8] < '0' ||
	    buf[i + 8] > '9')
		return HTTPREQ_BAD;
	memcpy(method, buf, m);
	method[m] = 0;
	memcpy(path, buf + p0, pl);
	path[pl] = 0;
	return HTTPREQ_OK;
}

/* The value of key in path's query ("?a=1&b=2"), %XX decoded; 0, or -1
 * when absent, empty or too long. */
int httpreq_query(const char *path, const char *key, char *out, size_t len)
{
	const char *q = strchr(path, '?');
	size_t kl = strlen(key), o = 0;

	for (q = q ? q + 1 : NULL; q && *q; q = strchr(q, '&') ? strchr(q, '&') + 1 : NULL) {
		if (strncmp(q, key, kl) || q[kl] != '=')
			continue;
		for (const char *v = q + kl + 1; *v && *v != '&'; v++) {
			unsigned x;

			if (o + 1 >= len)
				return -1;
			if (*v == '%' && sscanf(v + 1, "%2x", &x) == 1 && isxdigit((unsigned char)v[1]) &&
			    isxdigit((unsigned char)v[2])) {
				out[o++] = (char)x;
				v += 2;
			} else {
				out[o++] = *v == '+' ? ' ' : *v;
			}
		}
		out[o] = 0;
		return o && !memchr(out, 0, o) ? 0 : -1;
	}
	return -1;
}
