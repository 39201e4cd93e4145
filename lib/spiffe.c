/* SPDX-License-Identifier: Apache-2.0 */
/* SPIFFE IDs per the SPIFFE-ID spec: strict parsing with a readable reason
 * for every rejection, and weft's workload and node path shapes. Pure: no
 * I/O, no allocation, no globals. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <weft/spiffe.h>

static const char scheme[] = "spiffe://";
#define SCHEME_LEN (sizeof(scheme) - 1)

static int td_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

static int seg_char_ok(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* The reason a trust-domain byte is refused. Specific reasons for the
 * mistakes people actually make (a port, userinfo, an uppercase name)
 * beat a generic "invalid character". */
static const char *td_char_why(unsigned char c)
{
	switch (c) {
	case ':': return "trust domain must not have a port";
	case '@': return "trust domain must not have userinfo";
	case '%': return "percent-encoding is not allowed";
	case '?': return "query is not allowed";
	case '#': return "fragment is not allowed";
	case '\0': return "NUL byte in SPIFFE ID";
	}
	if (c >= 'A' && c <= 'Z')
		return "trust domain must be lowercase";
	return "trust domain has a character outside [a-z0-9._-]";
}

static const char *seg_char_why(unsigned char c)
{
	switch (c) {
	case '%': return "percent-encoding is not allowed";
	case '?': return "query is not allowed";
	case '#': return "fragment is not allowed";
	case '\0': return "NUL byte in SPIFFE ID";
	}
	return "path has a character outside [A-Za-z0-9._-]";
}

static int fail(const char **why, const char *reason)
{
	if (why)
		*why = reason;
	return -EINVAL;
}

/* Check one path segment [s, s+n); NULL if fine, else the reason. */
static const char *segment_check(const char *s, size_t n)
{
	if (n == 0)
		return "empty path segment";
	if (n == 1 && s[0] == '.')
		return "path segment '.' is not allowed";
	if (n == 2 && s[0] == '.' && s[1] == '.')
		return "path segment '..' is not allowed";
	for (size_t i = 0; i < n; i++)
		if (!seg_char_ok((unsigned char)s[i]))
			return seg_char_why((unsigned char)s[i]);
	return NULL;
}

int spiffe_id_parse(const char *s, size_t len, struct spiffe_id *out, const char **why)
{
	size_t i, td_len, seg;

	if (!s)
		return fail(why, "no SPIFFE ID");
	if (len > SPIFFE_ID_MAX)
		return fail(why, "SPIFFE ID is longer than 2048 bytes");
	if (len < SCHEME_LEN || memcmp(s, scheme, SCHEME_LEN) != 0) {
		if (len >= SCHEME_LEN && strncasecmp(s, scheme, SCHEME_LEN) == 0)
			return fail(why, "scheme must be lowercase spiffe");
		return fail(why, "scheme must be spiffe");
	}

	for (i = SCHEME_LEN; i < len && s[i] != '/'; i++)
		if (!td_char_ok((unsigned char)s[i]))
			return fail(why, td_char_why((unsigned char)s[i]));
	td_len = i - SCHEME_LEN;
	if (td_len == 0)
		return fail(why, "trust domain is empty");
	if (td_len > SPIFFE_TD_MAX)
		return fail(why, "trust domain is longer than 255 bytes");

	/* Path: zero or more "/segment"; i sits on a '/' or at the end. */
	while (i < len) {
		const char *r;

		seg = ++i;
		while (i < len && s[i] != '/')
			i++;
		if (i == seg && i == len)
			return fail(why, "path must not end with a slash");
		r = segment_check(s + seg, i - seg);
		if (r)
			return fail(why, r);
	}

	if (out) {
		size_t path_len = len - SCHEME_LEN - td_len;

		memcpy(out->td, s + SCHEME_LEN, td_len);
		out->td[td_len] = '\0';
		/* path_len < 2048 - 9, so it always fits out->path. */
		memcpy(out->path, s + SCHEME_LEN + td_len, path_len);
		out->path[path_len] = '\0';
	}
	if (why)
		*why = NULL;
	return 0;
}

/* Returns 1 when td is a valid trust domain name, 0 otherwise. */
int spiffe_td_valid(const char *td)
{
	size_t n;

	if (!td)
		return 0;
	n = strlen(td);
	if (n == 0 || n > SPIFFE_TD_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!td_char_ok((unsigned char)td[i]))
			return 0;
	return 1;
}

int spiffe_segment_valid(const char *s)
{
	return s && segment_check(s, strlen(s)) == NULL;
}

/* Split id->path into exactly nseg segments; each segs[k] points into the
 * path with lens[k] its length. 0 or -EINVAL. */
static int path_split(const char *path, const char **segs, size_t *lens, size_t nseg)
{
	const char *p = path;
	size_t k = 0;

	while (*p == '/') {
		const char *e = strchr(p + 1, '/');
		size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);

		if (k == nseg)
			return -EINVAL;
		segs[k] = p + 1;
		lens[k] = n;
		k++;
		p += 1 + n;
	}
	return (*p == '\0' && k == nseg) ? 0 : -EINVAL;
}

static int seg_copy(char *dst, size_t dstlen, const char *src, size_t n)
{
	if (n >= dstlen)
		return -ENOSPC;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

static int seg_is(const char *seg, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(seg, lit, n) == 0;
}

int spiffe_id_workload(const struct spiffe_id *id, char *ns, size_t nslen,
		       char *sa, size_t salen)
{
	const char *segs[4];
	size_t lens[4];
	int rc;

	if (!id || path_split(id->path, segs, lens, 4) < 0 ||
	    !seg_is(segs[0], lens[0], "ns") || !seg_is(segs[2], lens[2], "sa"))
		return -EINVAL;
	rc = seg_copy(ns, nslen, segs[1], lens[1]);
	if (rc == 0)
		rc = seg_copy(sa, salen, segs[3], lens[3]);
	return rc;
}

/* spiffe://td/weft/<kind>/<name> -> name */
static int spiffe_id_weft(const struct spiffe_id *id, const char *kind, char *name, size_t len)
{
	const char *segs[3];
	size_t lens[3];

	if (!id || path_split(id->path, segs, lens, 3) < 0 ||
	    !seg_is(segs[0], lens[0], "weft") || !seg_is(segs[1], lens[1], kind))
		return -EINVAL;
	return seg_copy(name, len, segs[2], lens[2]);
}

int spiffe_id_node(const struct spiffe_id *id, char *node, size_t len)
{
	return spiffe_id_weft(id, "node", node, len);
}

int spiffe_id_gateway(const struct spiffe_id *id, char *name, size_t len)
{
	return spiffe_id_weft(id, "gateway", name, len);
}

static int format_checked(char *out, size_t len, int n)
{
	if (n < 0 || (size_t)n >= len || n > SPIFFE_ID_MAX) {
		if (len)
			out[0] = '\0';
		return -ENOSPC;
	}
	return n;
}

int spiffe_workload_format(char *out, size_t len, const char *td, const char *ns, const char *sa)
{
	if (!spiffe_td_valid(td) || !spiffe_segment_valid(ns) || !spiffe_segment_valid(sa))
		return -EINVAL;
	return format_checked(out, len, snprintf(out, len, "spiffe://%s/ns/%s/sa/%s", td, ns, sa));
}

int spiffe_node_format(char *out, size_t len, const char *td, const char *node)
{
	if (!spiffe_td_valid(td) || !spiffe_segment_valid(node))
		return -EINVAL;
	return format_checked(out, len, snprintf(out, len, "spiffe://%s/weft/node/%s", td, node));
}

int spiffe_gateway_format(char *out, size_t len, const char *td, const char *name)
{
	if (!spiffe_td_valid(td) || !spiffe_segment_valid(name))
		return -EINVAL;
	return format_checked(out, len, snprintf(out, len, "spiffe://%s/weft/gateway/%s", td,
						 name));
}
