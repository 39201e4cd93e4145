/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus text exposition (promtext.h). */
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <weft/promtext.h>

void promtext_init(struct promtext *t)
{
	memset(t, 0, sizeof(*t));
}

void promtext_release(struct promtext *t)
{
	free(t->p);
	memset(t, 0, sizeof(*t));
}

static int promtext_room(struct promtext *t, size_t n)
{
	size_t cap = t->cap ? t->cap : 64u << 10;
	char *p;

	if (t->oom)
		return -1;
	if (t->len + n + 1 <= t->cap)
		return 0;
	while (cap < t->len + n + 1)
		cap *= 2;
	p = realloc(t->p, cap);
	if (!p) {
		t->oom = 1;
		return -1;
	}
	t->p = p;
	t->cap = cap;
	return 0;
}

void promtext_put(struct promtext *t, const char *s, size_t n)
{
	if (promtext_room(t, n))
		return;
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = 0;
}

void promtext_printf(struct promtext *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (promtext_room(t, 256))
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= t->cap - t->len) {
		if (promtext_room(t, (size_t)n))
			return;
		va_start(ap, fmt);
		vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
	}
	t->len += (size_t)n;
}

/* The format escapes \ and newline in HELP, and also " in label values. */
static void promtext_escaped(struct promtext *t, const char *v, int quote)
{
	const char *run = v;

	for (; *v; v++) {
		const char *rep = *v == '\\' ? "\\\\" : *v == '\n' ? "\\n" :
				  quote && *v == '"' ? "\\\"" : NULL;

		if (!rep)
			continue;
		promtext_put(t, run, (size_t)(v - run));
		promtext_put(t, rep, 2);
		run = v + 1;
	}
	promtext_put(t, run, (size_t)(v - run));
}

void promtext_escape(struct promtext *t, const char *v)
{
	promtext_escaped(t, v, 1);
}

void promtext_family(struct promtext *t, const char *name, const char *type, const char *help)
{
	promtext_printf(t, "# HELP %s ", name);
	promtext_escaped(t, help, 0);
	promtext_printf(t, "\n# TYPE %s %s\n", name, type);
}

static void promtext_labels(struct promtext *t, const char *const *keys,
			    const char *const *values, size_t n)
{
	if (!n)
		return;
	promtext_put(t, "{", 1);
	for (size_t i = 0; i < n; i++) {
		promtext_printf(t, "%s%s=\"", i ? "," : "", keys[i]);
		promtext_escape(t, values[i] ? values[i] : "");
		promtext_put(t, "\"", 1);
	}
	promtext_put(t, "}", 1);
}

void promtext_sample(struct promtext *t, const char *name, const char *const *keys,
		     const char *const *values, size_t n, double value)
{
	promtext_put(t, name, strlen(name));
	promtext_labels(t, keys, values, n);
	promtext_printf(t, " %.17g\n", value);
}

void promtext_sample_u64(struct promtext *t, const char *name, const char *const *keys,
			 const char *const *values, size_t n, uint64_t value)
{
	promtext_put(t, name, strlen(name));
	promtext_labels(t, keys, values, n);
	promtext_printf(t, " %" PRIu64 "\n", value);
}

/* --- process_* ---------------------------------------------------------------- */

static unsigned promtext_open_fds(void)
{
	DIR *dh = opendir("/proc/self/fd");
	struct dirent *de;
	unsigned n = 0;

	if (!dh)
		return 0;
	while ((de = readdir(dh)))
		n += de->d_name[0] != '.';
	closedir(dh);
	return n ? n - 1 : 0;	/* the directory's own fd */
}

/* /proc/self/stat: utime, stime (ticks), starttime (ticks after boot),
 * vsize (bytes), rss (pages). */
static int promtext_stat(double *cpu, double *start, double *vsize, double *rss)
{
	unsigned long long ut, st, starttime, vs;
	long long rs;
	char buf[1024], *p;
	FILE *f = fopen("/proc/self/stat", "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
			 "%*d %*d %*d %*d %llu %llu %lld", &ut, &st, &starttime, &vs, &rs) != 5)
		return -1;
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	double boot = 0;
	f = fopen("/proc/stat", "r");
	if (f) {
		char line[256];

		while (fgets(line, sizeof(line), f))
			if (!strncmp(line, "btime ", 6)) {
				boot = strtod(line + 6, NULL);
				break;
			}
		fclose(f);
	}
	*cpu = (double)(ut + st) / (double)tick;
	*start = boot + (double)starttime / (double)tick;
	*vsize = (double)vs;
	*rss = (double)rs * (double)page;
	return 0;
}

void promtext_one(struct promtext *t, const char *name, const char *type,
			 const char *help, double v)
{
	promtext_family(t, name, type, help);
	promtext_sample(t, name, NULL, NULL, 0, v);
}

void promtext_process(struct promtext *t)
{
	double cpu, start, vsize, rss;
	struct rlimit rl;

	if (promtext_stat(&cpu, &start, &vsize, &rss) == 0) {
		promtext_one(t, "process_cpu_seconds_total", "counter",
			     "Total user and system CPU time spent in seconds.", cpu);
		promtext_one(t, "process_resident_memory_bytes", "gauge",
			     "Resident memory size in bytes.", rss);
		promtext_one(t, "process_virtual_memory_bytes", "gauge",
			     "Virtual memory size in bytes.", vsize);
		promtext_one(t, "process_start_time_seconds", "gauge",
			     "Start time of the process since unix epoch in seconds.", start);
	}
	promtext_one(t, "process_open_fds", "gauge", "Number of open file descriptors.",
		     promtext_open_fds());
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		promtext_one(t, "process_max_fds", "gauge",
			     "Maximum number of open file descriptors.", (double)rl.rlim_cur);
}
