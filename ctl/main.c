/* SPDX-License-Identifier: Apache-2.0 */
/* weftctl: the operator's tool over weftd's admin API (DESIGN §7). Human
 * tables by default, -o json for scripts. Exit codes: 0 ok (explain:
 * allowed), 1 the daemon answered with a failure (not ready; explain:
 * denied or failing), 2 usage or unreachable. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "admin.h"
#include "table.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2

static const char *admin_addr = "127.0.0.1:15000";
static int json_out;

struct verb {
	const char *name, *args, *help;
	int (*run)(int argc, char **argv);
};

static const struct verb verbs[];

static void usage(FILE *f)
{
	fprintf(f, "usage: weftctl [--admin ADDR] [-o table|json] VERB [ARGS]\n\n"
		"Asks the weftd of this node (its admin API, default 127.0.0.1:15000; a\n"
		"sidecar's is unix:STATE_DIR/admin.sock) and prints what it says.\n\nverbs:\n");
	for (const struct verb *v = verbs; v->name; v++)
		fprintf(f, "  %-10s %-8s %s\n", v->name, v->args, v->help);
	fprintf(f, "\nexit: 0 ok, 1 the daemon says no (not ready, refused), 2 usage or no "
		"daemon.\n'weftctl VERB --help' says more about a verb.\n");
}

/* GET (or POST) path; the parsed JSON, or NULL after printing why (and
 * *rc set to the exit code). */
static struct json_object *ask(const char *method, const char *path, int *rc)
{
	char err[512], *body = NULL;
	struct json_object *j;
	int status = 0;

	if (ctl_request(admin_addr, method, path, &status, &body, err, sizeof(err))) {
		fprintf(stderr, "weftctl: %s\n", err);
		*rc = EXIT_USAGE;
		return NULL;
	}
	if (status != 200) {
		fprintf(stderr, "weftctl: %s %s: HTTP %d: %s", method, path, status, body);
		free(body);
		*rc = EXIT_FAILED;
		return NULL;
	}
	j = json_tokener_parse(body);
	if (!j)
		fprintf(stderr, "weftctl: %s %s: the answer is not JSON\n", method, path);
	free(body);
	*rc = j ? 0 : EXIT_FAILED;
	return j;
}

static const char *str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return "";
	return json_object_get_string(v);
}

static long long num(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static void print_json(struct json_object *j)
{
	printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
						       JSON_C_TO_STRING_NOSLASHESCAPE));
}

/* A JSON array as "a,b,c" for a table cell. */
static const char *joined(struct json_object *e, const char *key, char *buf, size_t len)
{
	struct json_object *a;
	size_t o = 0;

	buf[0] = 0;
	if (!json_object_object_get_ex(e, key, &a) || !json_object_is_type(a, json_type_array))
		return buf;
	for (size_t i = 0; i < json_object_array_length(a) && o + 2 < len; i++) {
		struct json_object *x = json_object_array_get_idx(a, i);
		const char *s = json_object_is_type(x, json_type_object) ?
				str(x, "port") : json_object_get_string(x);
		int n = snprintf(buf + o, len - o, "%s%s", i ? "," : "", s);

		o += n > 0 ? (size_t)n : 0;
	}
	return buf;
}

/* A list endpoint shown as a table: keys[i] names the JSON key of column i
 * (an array shows as "a,b,c"). */
static int list(const char *path, size_t ncols, const char *const *head,
		const char *const *keys)
{
	struct json_object *j;
	struct table t;
	int rc;

	j = ask("GET", path, &rc);
	if (!j)
		return rc;
	if (json_out) {
		print_json(j);
		json_object_put(j);
		return 0;
	}
	table_init(&t, ncols, head);
	for (size_t i = 0; i < json_object_array_length(j); i++) {
		struct json_object *e = json_object_array_get_idx(j, i), *v;
		const char *cells[TABLE_COLS_MAX];
		char bufs[TABLE_COLS_MAX][1024];

		for (size_t c = 0; c < ncols; c++)
			cells[c] = json_object_object_get_ex(e, keys[c], &v) &&
				   json_object_is_type(v, json_type_array) ?
				   joined(e, keys[c], bufs[c], sizeof(bufs[c])) : str(e, keys[c]);
		table_row(&t, cells);
	}
	table_print(&t, stdout);
	table_release(&t);
	json_object_put(j);
	return 0;
}

/* --- verbs -------------------------------------------------------------------- */

static int run_status(int argc, char **argv)
{
	struct json_object *j;
	int rc, ready;

	(void)argc;
	(void)argv;
	j = ask("GET", "/stats", &rc);
	if (!j)
		return rc;
	ready = !strcmp(str(j, "ready"), "true");
	if (json_out) {
		print_json(j);
	} else {
		printf("node %s (%s), trust domain %s: %s\n", str(j, "node"), str(j, "node_ip"),
		       str(j, "trust_domain"), ready ? "ready" : "NOT READY (no certificate or "
		       "no registry snapshot yet)");
		printf("registry version %lld; %lld pods enrolled; %lld tunnels out, %lld HBONE "
		       "connections in; %lld live connections\n", num(j, "registry_version"),
		       num(j, "pods"), num(j, "tunnels"), num(j, "hbone_connections"),
		       num(j, "live_connections"));
		printf("since start: %lld outbound, %lld inbound, %lld plaintext inbound, %lld "
		       "same-node, %lld passthrough, %lld failed\n", num(j, "outbound"),
		       num(j, "inbound"), num(j, "inbound_plaintext"), num(j, "same_node"),
		       num(j, "passthrough"), num(j, "failed"));
	}
	json_object_put(j);
	return ready ? 0 : EXIT_FAILED;
}

static int run_workloads(int argc, char **argv)
{
	static const char *const head[] = { "WORKLOAD", "IP", "IDENTITY", "CONNECTIONS",
					    "REFUSED" };
	static const char *const keys[] = { "uid", "ip", "identity", "connections", "refused" };

	(void)argc;
	(void)argv;
	return list("/workloads", 5, head, keys);
}

static int run_tunnels(int argc, char **argv)
{
	static const char *const head[] = { "SOURCE", "NODE", "PEER", "STATE", "STREAMS",
					    "TOTAL", "SENT", "RECEIVED", "CIPHER" };
	static const char *const keys[] = { "source", "node", "peer", "state", "streams",
					    "streams_total", "bytes_sent", "bytes_received",
					    "cipher" };

	(void)argc;
	(void)argv;
	return list("/tunnels", 9, head, keys);
}

static int run_certs(int argc, char **argv)
{
	static const char *const head[] = { "IDENTITY", "STATE", "NOT-AFTER", "RENEW-AT",
					    "PODS", "LAST-ERROR" };
	static const char *const keys[] = { "identity", "state", "not_after", "renew_at",
					    "pods", "last_error" };

	(void)argc;
	(void)argv;
	return list("/certs", 6, head, keys);
}

static int run_services(int argc, char **argv)
{
	static const char *const head[] = { "SERVICE", "NAMESPACE", "NETWORK", "VIPS", "PORTS",
					    "ENDPOINTS" };
	static const char *const keys[] = { "name", "namespace", "network", "vips", "ports",
					    "endpoints" };

	(void)argc;
	(void)argv;
	return list("/services", 6, head, keys);
}

static int run_connections(int argc, char **argv)
{
	static const char *const head[] = { "DIRECTION", "SRC", "DST", "DST-WORKLOAD",
					    "SRC-IDENTITY", "AGE-MS", "TRACE" };
	static const char *const keys[] = { "direction", "src", "dst", "dst_workload",
					    "src_identity", "age_ms", "trace_id" };

	(void)argc;
	(void)argv;
	return list("/connections", 7, head, keys);
}

static int run_policy(int argc, char **argv)
{
	static const char *const head[] = { "POLICY", "NAMESPACE", "SCOPE", "ACTION", "RULES" };
	static const char *const keys[] = { "name", "namespace", "scope", "action", "rules" };

	(void)argc;
	(void)argv;
	return list("/policy", 5, head, keys);
}

static int run_log_level(int argc, char **argv)
{
	static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
	struct json_object *j;
	char path[64];
	int rc, ok = 0;

	if (argc > 2) {
		fprintf(stderr, "usage: weftctl log-level [error|warn|info|debug]\n");
		return EXIT_USAGE;
	}
	if (argc == 2) {
		for (int i = 0; levels[i]; i++)
			ok |= !strcmp(argv[1], levels[i]);
		if (!ok) {
			fprintf(stderr, "weftctl: log level %s: not one of error, warn, info, "
				"debug\n", argv[1]);
			return EXIT_USAGE;
		}
		snprintf(path, sizeof(path), "/logging?level=%s", argv[1]);
	}
	j = ask(argc == 2 ? "POST" : "GET", argc == 2 ? path : "/logging", &rc);
	if (!j)
		return rc;
	if (json_out)
		print_json(j);
	else
		printf("log level %s\n", str(j, "level"));
	json_object_put(j);
	return 0;
}

/* SRC DST:PORT as an URL query (the few bytes that matter escaped). */
static void query_escape(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s && o + 4 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '&' || c == '%' || c == '+' || c == '#' || c == '?' || c <= ' ' ||
		    c >= 0x7f)
			o += (size_t)snprintf(out + o, len - o, "%%%02X", c);
		else
			out[o++] = (char)c;
	}
	out[o] = 0;
}

static int run_explain(int argc, char **argv)
{
	struct json_object *j, *steps;
	char src[300], dst[300], path[700];
	const char *verdict;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: weftctl explain SRC DST:PORT\n"
			"  SRC: a pod of this node, by IP or namespace/name\n");
		return EXIT_USAGE;
	}
	query_escape(src, sizeof(src), argv[1]);
	query_escape(dst, sizeof(dst), argv[2]);
	snprintf(path, sizeof(path), "/explain?src=%s&dst=%s", src, dst);
	j = ask("GET", path, &rc);
	if (!j)
		return rc;
	verdict = str(j, "verdict");
	if (json_out) {
		print_json(j);
	} else {
		struct table t;
		static const char *const head[] = { "STEP", "RESULT", "WHAT WEFTD SEES" };

		table_init(&t, 3, head);
		if (json_object_object_get_ex(j, "steps", &steps))
			for (size_t i = 0; i < json_object_array_length(steps); i++) {
				struct json_object *e = json_object_array_get_idx(steps, i);
				const char *cells[] = { str(e, "step"), str(e, "result"),
							str(e, "says") };

				table_row(&t, cells);
			}
		table_print(&t, stdout);
		table_release(&t);
		printf("\n%s: %s\n", !strcmp(verdict, "allow") ? "ALLOWED" :
		       !strcmp(verdict, "deny") ? "DENIED" : "FAILS", str(j, "sentence"));
	}
	rc = !strcmp(verdict, "allow") ? 0 : EXIT_FAILED;
	json_object_put(j);
	return rc;
}

static int run_why(int argc, char **argv)
{
	static const char *const head[] = { "AGO", "FLAG", "DIRECTION", "SRC", "DST", "TRACE",
					    "WHY" };
	struct json_object *j;
	char path[128];
	struct table t;
	size_t n;
	int rc;

	if (argc > 2) {
		fprintf(stderr, "usage: weftctl why [TRACE_ID]\n");
		return EXIT_USAGE;
	}
	if (argc == 2 && (strlen(argv[1]) != 32 || strspn(argv[1], "0123456789abcdef") != 32)) {
		fprintf(stderr, "weftctl: %s: a trace id is 32 lower-case hex digits (the "
			"access log's trace_id)\n", argv[1]);
		return EXIT_USAGE;
	}
	snprintf(path, sizeof(path), argc == 2 ? "/why?trace=%s" : "/why", argc == 2 ? argv[1] :
		 "");
	j = ask("GET", path, &rc);
	if (!j)
		return rc;
	n = json_object_array_length(j);
	if (json_out) {
		print_json(j);
	} else if (!n) {
		printf(argc == 2 ? "no failed connection with trace id %s on this node\n" :
		       "no failed connections kept on this node%s\n", argc == 2 ? argv[1] : "");
	} else {
		table_init(&t, 7, head);
		for (size_t i = 0; i < n; i++) {
			struct json_object *e = json_object_array_get_idx(j, i);
			char ago[32];
			const char *cells[7];

			snprintf(ago, sizeof(ago), "%llds", (long long)time(NULL) - num(e, "at"));
			cells[0] = ago;
			cells[1] = str(e, "response_flags");
			cells[2] = str(e, "direction");
			cells[3] = str(e, "src");
			cells[4] = str(e, "dst");
			cells[5] = str(e, "trace_id");
			cells[6] = str(e, "error");
			table_row(&t, cells);
		}
		table_print(&t, stdout);
		table_release(&t);
	}
	json_object_put(j);
	return argc == 2 && !n ? EXIT_FAILED : 0;
}

static const struct verb verbs[] = {
	{ "status", "", "is the node ready; pods, tunnels, connections", run_status },
	{ "workloads", "", "pods enrolled on this node, their identities", run_workloads },
	{ "services", "", "the registry's services: VIPs, ports, endpoints", run_services },
	{ "tunnels", "", "HBONE tunnels to other nodes, by source identity", run_tunnels },
	{ "certs", "", "certificates: state, expiry, renewal, last error", run_certs },
	{ "policy", "", "the registry's authorization policies", run_policy },
	{ "connections", "", "proxied connections open now (newest 1,000)", run_connections },
	{ "log-level", "[LEVEL]", "show it, or set error|warn|info|debug", run_log_level },
	{ "explain", "SRC DST", "would SRC reach DST:PORT, and if not, why", run_explain },
	{ "why", "[TRACE]", "the last failed connections, or one, and why", run_why },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "admin", required_argument, NULL, 'a' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "+a:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			admin_addr = optarg;
			break;
		case 'o':
			if (!strcmp(optarg, "json")) {
				json_out = 1;
			} else if (strcmp(optarg, "table")) {
				fprintf(stderr, "weftctl: -o %s: table or json\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (const struct verb *v = verbs; v->name; v++) {
		if (strcmp(argv[optind], v->name))
			continue;
		if (optind + 1 < argc && (!strcmp(argv[optind + 1], "--help") ||
					  !strcmp(argv[optind + 1], "-h"))) {
			printf("usage: weftctl [--admin ADDR] [-o table|json] %s %s\n  %s\n",
			       v->name, v->args, v->help);
			return 0;
		}
		return v->run(argc - optind, argv + optind);
	}
	fprintf(stderr, "weftctl: %s: no such verb\n\n", argv[optind]);
	usage(stderr);
	return EXIT_USAGE;
}
