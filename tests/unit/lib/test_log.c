/* SPDX-License-Identifier: Apache-2.0 */
/* Logging: buffered mode holds lines until log_flush or an ERROR line, keeps
 * their order, survives more lines than its buffer, and plain mode writes
 * each line at once. stderr is pointed at a temporary file to read back. */
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

	unlink(path);
	return check_done("log");
}
