/* SPDX-License-Identifier: Apache-2.0 */
/* Logging for daemon and agent: one line per event, text or JSON, to stderr. */
#ifndef WEFT_LOG_H
#define WEFT_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_ERROR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

extern enum log_level log_level;

/* Set the threshold from a name ("error", "warn", "info", "debug");
 * returns 0 or -EINVAL. */
int log_level_set(const char *name);
const char *log_level_name(enum log_level lvl);
/* Write one line: "<time> <level> <component>: <message>". */
void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Copy peer-controlled bytes into dst as printable ASCII (\xNN for the
 * rest), always NUL-terminated; returns dst. */
char *log_escape(char *dst, size_t dstsz, const void *src, size_t len);
/* Name shown in every line ("weft-agent", "weftd"). */
void log_set_component(const char *name);
/* Buffered mode for single-threaded daemons: lines below ERROR gather in
 * memory until log_flush (the event loop calls it before it sleeps), the
 * buffer is full, or an ERROR line comes. log_flush also writes the
 * summaries of rate-limited lines whose window has passed. */
void log_buffered(int on);
void log_flush(void);

/* One rate limiter for a warning that can repeat without bound (accept
 * failing on EMFILE, a flood of refused connections): the first occurrence
 * is written at once; later ones are counted and summarised by one line,
 * "<the last of them> (repeated N times in the last Ns)", at most once per
 * LOG_RL_WINDOW_MS. The summary is written by the next occurrence after the
 * window or by log_flush (which the event loop calls every turn), so a count
 * is reported even when the storm stops. Keep one per call site, static and
 * zero-initialised (LOG_RL_INIT), or one per object whose lines it limits;
 * it must stay valid while it has a count to report (log_rl_forget). */
#define LOG_RL_WINDOW_MS 1000u
#define LOG_RL_TEXT_MAX 256

struct log_rl {
	struct log_rl *next;		/* in the list of limiters with a count to report */
	uint64_t since_ms;		/* last line written (first or summary); 0: never */
	unsigned long n;		/* occurrences counted since since_ms */
	enum log_level lvl;		/* of the last counted occurrence */
	int listed;
	char last[LOG_RL_TEXT_MAX];	/* text of the last counted occurrence */
};

#define LOG_RL_INIT { 0 }

void log_rl_msg(struct log_rl *rl, enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Drop rl's pending count (report it first) before rl's memory goes. */
void log_rl_forget(struct log_rl *rl);
/* The rate limiter's clock, monotonic milliseconds; NULL restores
 * CLOCK_MONOTONIC (tests inject their own). */
void log_set_clock(uint64_t (*now_ms)(void));

#define log_warn_rl(rl, ...) log_rl_msg((rl), LOG_WARN, __VA_ARGS__)
#define log_info_rl(rl, ...) log_rl_msg((rl), LOG_INFO, __VA_ARGS__)

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  do { if (log_level >= LOG_INFO) log_msg(LOG_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_level >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
