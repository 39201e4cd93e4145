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
 * buffer is full, or an ERROR line comes. */
void log_buffered(int on);
void log_flush(void);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  do { if (log_level >= LOG_INFO) log_msg(LOG_INFO, __VA_ARGS__); } while (0)
#define log_debug(...) do { if (log_level >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
