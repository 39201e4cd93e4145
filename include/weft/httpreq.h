/* SPDX-License-Identifier: Apache-2.0 */
/* The request line of a request to one of weft's small HTTP/1.1 endpoints
 * (weftd's admin API, readiness and metrics, the agent's metrics): pure,
 * for httpsrv.c and its fuzz target. */
#ifndef WEFT_HTTPREQ_H
#define WEFT_HTTPREQ_H

#include <stddef.h>

#define HTTPREQ_METHOD_MAX 8		/* "OPTIONS" and its NUL */
#define HTTPREQ_PATH_MAX 512

enum httpreq {
	HTTPREQ_MORE = 0,		/* no end of the header yet */
	HTTPREQ_OK,			/* method and path filled in */
	HTTPREQ_BAD,			/* refuse with 400, at once */
};

/* buf holds the first len bytes of a request. Once its header is complete
 * (a blank line: CRLF CRLF or LF LF) the first line must be
 * "METHOD SP PATH SP HTTP/1.x": METHOD 1-7 upper-case letters, PATH an
 * origin form ('/' then visible ASCII, under HTTPREQ_PATH_MAX bytes). A
 * NUL or another control byte in the request line is BAD as soon as it is
 * seen, so no request waits for its deadline behind a byte we would never
 * read past. */
enum httpreq httpreq_parse(const char *buf, size_t len, char method[HTTPREQ_METHOD_MAX],
			     char path[HTTPREQ_PATH_MAX]);

/* The value of key in path's query ("/x?a=1&b=2"), %XX and '+' decoded,
 * into out (len bytes with the NUL). 0, or -1 when absent, empty, too long
 * or decoding to a NUL. */
int httpreq_query(const char *path, const char *key, char *out, size_t len);

#endif
