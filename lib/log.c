/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: one line per event on stderr, with a wall-clock timestamp, the
 * level and the component. Peer-controlled strings go through log_escape. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <weft/log.h>

enum log_level log_level = LOG_INFO;
static const char *log_component = "weft";

/* Buffered mode (log_buffered): lines gather here and go out in one write
 * per event-loop turn (log_flush) instead of one write per line, which at a
 * few thousand access-log lines a second is a syscall per connection. Only
 * for a process that logs from one thread. */
static char log_buf[16384];
static size_t log_buf_len;
static int log_buf_on;

static const char *const level_names[] = {
	[LOG_ERROR] = "error",
	[LOG_WARN] = "warn",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

const char *log_level_name(enum log_level lvl)
{
	if ((unsigned)lvl > LOG_DEBUG)
		return "?";
	return level_names[lvl];
}

int log_level_set(const char *name)
{
	for (unsigned i = 0; i <= LOG_DEBUG; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			log_level = i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_set_component(const char *name)
{
	log_component = name;
}

void log_buffered(int on)
{
	log_flush();
	log_buf_on = on;
}

void log_flush(void)
{
	if (!log_buf_len)
		return;
	fwrite(log_buf, 1, log_buf_len, stderr);
	log_buf_len = 0;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n, m;

	if (lvl > log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		     log_level_name(lvl), log_component);
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (log_buf_on && lvl > LOG_ERROR) {
		if (log_buf_len + (size_t)n > sizeof(log_buf))
			log_flush();
		memcpy(log_buf + log_buf_len, line, (size_t)n);
		log_buf_len += (size_t)n;
		return;
	}
	log_flush();	/* an error goes out at once, after what came before */
	/* One write per line so concurrent writers do not interleave. */
	fwrite(line, 1, n, stderr);
}

char *log_escape(char *dst, size_t dstsz, const void *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = src;
	size_t o = 0;

	if (dstsz == 0)
		return dst;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
			if (o + 1 >= dstsz)
				break;
			dst[o++] = c;
		} else {
			if (o + 4 >= dstsz)
				break;
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o] = 0;
	return dst;
}
