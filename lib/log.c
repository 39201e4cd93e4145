/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: one line per event on stderr, with a wall-clock timestamp, the
 * level and the component. Peer-controlled strings go through log_escape. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <stdint.h>

#include <weft/log.h>

enum log_level log_level = LOG_INFO;
static const char *log_component = "weft";

/* Buffered mode (log_buffered): lines gather here and go out in one write
 * per event-loop turn (log_flush) instead of one write per line, which at a
 * few thousand access-log lines a second is a syscall per connection. Per
 * thread: a thread that did not ask for it writes each line at once (stdio
 * keeps lines whole between threads). */
static __thread char log_buf[16384];
static __thread size_t log_buf_len;
static __thread int log_buf_on;

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

static void log_buf_flush(void)
{
	if (!log_buf_len)
		return;
	fwrite(log_buf, 1, log_buf_len, stderr);
	log_buf_len = 0;
}

static void log_rl_tick(void);

void log_flush(void)
{
	log_rl_tick();
	log_buf_flush();
}

/* Format and write one line (msg is printf-formatted with ap). */
static void log_vline(enum log_level lvl, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	int n, m;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		     log_level_name(lvl), log_component);
	m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (log_buf_on && lvl > LOG_ERROR) {
		if (log_buf_len + (size_t)n > sizeof(log_buf))
			log_buf_flush();
		memcpy(log_buf + log_buf_len, line, (size_t)n);
		log_buf_len += (size_t)n;
		return;
	}
	log_buf_flush();	/* an error goes out at once, after what came before */
	/* One write per line so concurrent writers do not interleave. */
	fwrite(line, 1, n, stderr);
}

static void log_line(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void log_line(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline(lvl, fmt, ap);
	va_end(ap);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	if (lvl > log_level)
		return;
	va_start(ap, fmt);
	log_vline(lvl, fmt, ap);
	va_end(ap);
}

/* --- rate-limited lines ------------------------------------------------------ */

/* Limiters holding a count not yet reported, for log_flush. The daemons log
 * from one thread, so the list needs no lock. */
/* Per thread, like the buffer: a rate-limited call site belongs to one thread. */
static __thread struct log_rl *log_rl_list;
static uint64_t (*log_clock)(void);

static uint64_t log_clock_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void log_set_clock(uint64_t (*now_ms)(void))
{
	log_clock = now_ms;
}

/* Never 0, which marks a limiter that has not written yet. */
static uint64_t log_rl_now(void)
{
	uint64_t t = log_clock ? log_clock() : log_clock_mono();

	return t ? t : 1;
}

static void log_rl_unlist(struct log_rl *rl)
{
	struct log_rl **pp;

	if (!rl->listed)
		return;
	for (pp = &log_rl_list; *pp; pp = &(*pp)->next)
		if (*pp == rl) {
			*pp = rl->next;
			break;
		}
	rl->listed = 0;
	rl->next = NULL;
}

/* Write rl's summary line and start a new window at now. */
static void log_rl_report(struct log_rl *rl, uint64_t now)
{
	uint64_t secs = (now - rl->since_ms + 999) / 1000;

	if (rl->n && rl->lvl <= log_level)
		log_line(rl->lvl, "%s (repeated %lu time%s in the last %llus)", rl->last, rl->n,
			 rl->n == 1 ? "" : "s", (unsigned long long)(secs ? secs : 1));
	rl->n = 0;
	rl->since_ms = now;
	log_rl_unlist(rl);
}

static void log_rl_tick(void)
{
	struct log_rl *rl, *next;
	uint64_t now;

	if (!log_rl_list)
		return;
	now = log_rl_now();
	for (rl = log_rl_list; rl; rl = next) {
		next = rl->next;
		if (now - rl->since_ms >= LOG_RL_WINDOW_MS)
			log_rl_report(rl, now);
	}
}

void log_rl_msg(struct log_rl *rl, enum log_level lvl, const char *fmt, ...)
{
	uint64_t now;
	va_list ap;

	if (lvl > log_level)
		return;
	now = log_rl_now();
	if (rl->n && now - rl->since_ms >= LOG_RL_WINDOW_MS)
		log_rl_report(rl, now);		/* the window passed: the count goes out first */
	if (!rl->since_ms || (!rl->n && now - rl->since_ms >= LOG_RL_WINDOW_MS)) {
		/* Quiet for a window: this one is news, written at once. */
		rl->since_ms = now;
		va_start(ap, fmt);
		log_vline(lvl, fmt, ap);
		va_end(ap);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(rl->last, sizeof(rl->last), fmt, ap);
	va_end(ap);
	rl->lvl = lvl;
	rl->n++;
	if (!rl->listed) {
		rl->listed = 1;
		rl->next = log_rl_list;
		log_rl_list = rl;
	}
}

void log_rl_forget(struct log_rl *rl)
{
	if (!rl || !rl->listed)
		return;
	log_rl_report(rl, log_rl_now());
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
