/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: buffered mode holds lines until log_flush or an ERROR line, keeps
 * their order, survives more lines than its buffer, and plain mode writes
 * each line at once. The rate limiter writes the first line at once, counts
 * the rest and summarises them at most once a window, on the next line or
 * on log_flush, on an injected clock. stderr is pointed at a temporary file
 * to read back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include <weft/log.h>

static char path[] = "/tmp/weft-test-log-XXXXXX";

/* What stderr has received so far (stdio's own buffer flushed first). */
static char *written(void)
{
	static char buf[1 << 20];
	FILE *f;
	size_t n;

	fflush(stderr);
	f = fopen(path, "r");
	if (!f)
		return "";
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return buf;
}

static uint64_t fake_now = 1000000;

static uint64_t fake_clock(void)
{
	return fake_now;
}

static size_t count(const char *s, const char *what)
{
	size_t n = 0;

	while ((s = strstr(s, what))) {
		n++;
		s += strlen(what);
	}
	return n;
}

int main(void)
{
	int fd = mkstemp(path);
	const char *w, *a, *b;

	CHECK(fd >= 0);
	close(fd);
	CHECK(freopen(path, "w", stderr) != NULL);
	setvbuf(stderr, NULL, _IONBF, 0);
	log_set_component("test");

	log_info("plain one");
	CHECK(strstr(written(), "info  test: plain one\n") != NULL);

	log_buffered(1);
	log_info("held two");
	log_warn("held three");
	w = written();
	CHECK(strstr(w, "held two") == NULL);
	CHECK(strstr(w, "held three") == NULL);
	log_flush();
	w = written();
	a = strstr(w, "held two");
	b = strstr(w, "held three");
	CHECK(a && b && a < b);

	/* An error goes out at once, after the lines held before it. */
	log_info("before the error");
	log_error("the error");
	w = written();
	a = strstr(w, "before the error");
	b = strstr(w, "the error\n");
	CHECK(a && b && a < b);

	/* More than the buffer holds: nothing lost, nothing twice. */
	for (int i = 0; i < 2000; i++)
		log_info("line %04d of many", i);
	log_flush();
	w = written();
	CHECK_EQ_INT((int)count(w, " of many\n"), 2000);
	CHECK(strstr(w, "line 0000 of many") < strstr(w, "line 1999 of many"));

	/* Off again: lines go out as they come. */
	log_buffered(0);
	log_info("plain again");
	CHECK(strstr(written(), "plain again") != NULL);

	/* Rate limiter: the first line at once, then only counts. */
	log_set_clock(fake_clock);
	static struct log_rl rl = LOG_RL_INIT;
	size_t before = strlen(written());
	for (int i = 0; i < 100000; i++)
		log_warn_rl(&rl, "accept on %s: %s", "x:1", "Too many open files");
	w = written() + before;
	CHECK_EQ_INT((int)count(w, "accept on x:1: Too many open files\n"), 1);
	CHECK_EQ_INT((int)count(w, "repeated"), 0);
	/* Within the window, log_flush reports nothing yet. */
	fake_now += LOG_RL_WINDOW_MS - 1;
	log_flush();
	CHECK_EQ_INT((int)count(written() + before, "repeated"), 0);
	/* Once it has passed, log_flush writes one summary with the count,
	 * even though no new occurrence came. */
	fake_now += 1;
	log_flush();
	w = written() + before;
	CHECK(strstr(w, "accept on x:1: Too many open files (repeated 99999 times in the last 1s)\n")
	      != NULL);
	log_flush();
	CHECK_EQ_INT((int)count(written() + before, "repeated"), 1);

	/* A steady storm: a million occurrences over 10 s of the clock make
	 * one summary a second at most, and the counts add up. */
	before = strlen(written());
	unsigned long total = 0;
	for (int i = 0; i < 1000000; i++) {
		if (i % 10000 == 0)
			fake_now += 100;
		log_warn_rl(&rl, "storm %d", i & 1);
		if (i % 1000 == 0)
			log_flush();
	}
	fake_now += LOG_RL_WINDOW_MS;
	log_flush();
	w = written() + before;
	size_t lines = count(w, "\n");
	CHECK(lines >= 9 && lines <= 12);
	for (const char *q = w; (q = strstr(q, "(repeated ")); q++)
		total += strtoul(q + 10, NULL, 10);
	CHECK_EQ_INT((long long)total + (long long)count(w, "storm 0\n") +
		     (long long)count(w, "storm 1\n"), 1000000);

	/* Quiet for a window: the next one is news again, at once, with no
	 * summary (nothing was counted). */
	before = strlen(written());
	fake_now += 5 * LOG_RL_WINDOW_MS;
	log_warn_rl(&rl, "after the quiet");
	w = written() + before;
	CHECK(strstr(w, "after the quiet\n") != NULL);
	CHECK_EQ_INT((int)count(w, "repeated"), 0);

	/* The next occurrence after the window reports the count first. */
	log_warn_rl(&rl, "again %d", 1);
	log_warn_rl(&rl, "again %d", 2);
	fake_now += LOG_RL_WINDOW_MS + 500;
	log_warn_rl(&rl, "again %d", 3);
	w = written() + before;
	CHECK(strstr(w, "again 2 (repeated 2 times in the last 2s)\n") != NULL);
	CHECK(strstr(w, "again 3") == NULL);	/* counted in the new window */
	/* Two limiters do not share counts; below the level nothing counts. */
	static struct log_rl rl2 = LOG_RL_INIT;
	log_level_set("error");
	log_warn_rl(&rl2, "hidden");
	log_level_set("info");
	log_warn_rl(&rl2, "other one");
	w = written() + before;
	CHECK(strstr(w, "other one\n") != NULL);
	CHECK(strstr(w, "hidden") == NULL);
	/* forget reports what is pending and unlists the limiter. */
	log_rl_forget(&rl);
	CHECK(strstr(written() + before, "again 3 (repeated 1 time in the last 1s)\n") != NULL);
	before = strlen(written());
	fake_now += 10 * LOG_RL_WINDOW_MS;
	log_flush();
	CHECK_EQ_INT((int)strlen(written() + before), 0);
	log_set_clock(NULL);

	unlink(path);
	return check_done("log");
}
