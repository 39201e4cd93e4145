/* SPDX-License-Identifier: Apache-2.0 */
/* weft-cni: a chained CNI plugin (spec 1.0.0, also 0.3.x/0.4.0). ADD puts
 * the capture rules in the new pod's netns and hands the netns to weftd
 * over /run/weft/cni.sock; DEL undoes both, tolerating what is already
 * gone; CHECK verifies the rules; VERSION lists what we speak.
 *
 * Error codes on stdout (CNI error JSON, exit 1): the spec's 1 (version),
 * 4 (environment), 5 (I/O), 6 (decode), 7 (config), 11 (try again later:
 * weftd not reachable) and ours: 100 weftd refused the pod, 101 nftables. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include <weft/log.h>

#include "cniconf.h"
#include "cninft.h"
#include "enroll.h"

#define CNI_STDIN_MAX (1u << 20)	/* a config with prevResult is a few KiB */
#define CNI_ERR_WEFTD_REFUSED 100
#define CNI_ERR_NFTABLES 101

/* The cniVersion our output carries: the config's, once it parsed. */
static const char *cni_version = "1.0.0";

/* Print a CNI error object and return the exit status 1. */
static int cni_fail(int code, const char *msg, const char *details)
{
	struct json_object *o = json_object_new_object();

	if (o) {
		json_object_object_add(o, "cniVersion", json_object_new_string(cni_version));
		json_object_object_add(o, "code", json_object_new_int(code));
		json_object_object_add(o, "msg", json_object_new_string(msg));
		if (details && details[0])
			json_object_object_add(o, "details", json_object_new_string(details));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							      JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		printf("{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"out of memory\"}\n",
		       cni_version, code);
	}
	fflush(stdout);
	log_error("%s%s%s", msg, details && details[0] ? ": " : "", details ? details : "");
	return 1;
}

static int cni_stdin_read(char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *nb;

			if (cap >= CNI_STDIN_MAX) {
				free(buf);
				return -EFBIG;
			}
			cap *= 2;
			nb = realloc(buf, cap + 1);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
		}
		r = read(STDIN_FILENO, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			free(buf);
			return -e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

static const char *cni_env(const char *name)
{
	const char *v = getenv(name);

	return v && v[0] ? v : NULL;
}

/* VERSION: stdin carries at most {"cniVersion": ...}; answer in that
 * version when we speak it. */
static int cni_cmd_version(const char *in, size_t len)
{
	struct json_object *o = len ? json_tokener_parse(in) : NULL, *v;

	if (o && json_object_object_get_ex(o, "cniVersion", &v) &&
	    cniconf_version_supported(json_object_get_string(v)))
		cni_version = json_object_get_string(v);
	printf("{\"cniVersion\":\"%s\",\"supportedVersions\":%s}\n", cni_version,
	       cniconf_versions_json());
	json_object_put(o);
	return 0;
}

/* Whether this pod is one weft captures; logs why not. */
static int cni_pod_wanted(const struct cniconf *c, const struct cniconf_args *a,
			  const char *cmd)
{
	if (!a->pod_namespace[0] || !a->pod_name[0]) {
		log_info("%s: CNI_ARGS names no Kubernetes pod (K8S_POD_NAMESPACE, "
			 "K8S_POD_NAME): passing through", cmd);
		return 0;
	}
	if (cniconf_excluded(c, a->pod_namespace)) {
		log_info("%s %s/%s: namespace excluded: passing through", cmd,
			 a->pod_namespace, a->pod_name);
		return 0;
	}
	return 1;
}

static int cni_print_result(const struct cniconf *c)
{
	printf("%s\n", c->prev_result);
	fflush(stdout);
	return 0;
}

static int cni_cmd_add(const struct cniconf *c, const struct cniconf_args *a)
{
	Weft__Cni__V1__AddWorkload add = WEFT__CNI__V1__ADD_WORKLOAD__INIT;
	const char *netns = cni_env("CNI_NETNS"), *cid = cni_env("CNI_CONTAINERID");
	char err[512], err2[256], uid[sizeof(a->pod_namespace) + sizeof(a->pod_name) + 1];
	int fd, ret;

	if (!cid || !netns || !cni_env("CNI_IFNAME"))
		return cni_fail(4, "CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME must be set for ADD",
				NULL);
	if (!c->prev_result)
		return cni_fail(7, "weft-cni is a chained plugin and got no prevResult",
				"list it after the plugin that sets up the pod's interface "
				"(e.g. bridge) in the network's conflist");
	if (!cni_pod_wanted(c, a, "ADD"))
		return cni_print_result(c);

	snprintf(uid, sizeof(uid), "%s/%s", a->pod_namespace, a->pod_name);
	ret = cninft_install(netns, err, sizeof(err));
	if (ret < 0)
		return cni_fail(ret == -ENOENT ? 5 : CNI_ERR_NFTABLES,
				"cannot install the weft capture rules in the pod's netns", err);
	fd = open(netns, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, sizeof(err), "open %s: %s", netns, strerror(errno));
		goto fail_rules;
	}
	add.uid = uid;
	add.name = (char *)a->pod_name;
	add.namespace_ = (char *)a->pod_namespace;
	add.n_ips = c->n_ips;
	add.ips = (char **)c->ips;
	add.container_id = (char *)cid;
	add.netns_path = (char *)netns;
	add.transparent = 1;	/* cninft_install also set up the reply routing */
	ret = enroll_add(c->socket, &add, fd, ENROLL_TIMEOUT_MS, err, sizeof(err));
	close(fd);
	if (ret < 0)
		goto fail_rules;
	log_info("ADD %s: capture rules installed, enrolled with weftd (%zu address%s)",
		 uid, c->n_ips, c->n_ips == 1 ? "" : "es");
	return cni_print_result(c);

fail_rules:
	/* A pod whose traffic is redirected to listeners that will never
	 * exist has no network at all: take the rules out again. */
	if (cninft_remove(netns, err2, sizeof(err2)) < 0)
		log_error("ADD %s: removing the capture rules after the failure: %s", uid, err2);
	if (ret == -EREMOTEIO)
		return cni_fail(CNI_ERR_WEFTD_REFUSED, err, uid);
	if (fd < 0)
		return cni_fail(5, "cannot open the pod's netns", err);
	return cni_fail(11, err, "is weftd running on this node? The pod was not set up; "
			"the runtime will retry");
}

/* DEL does as much as it can and succeeds: the netns may be gone and
 * weftd may be down (it reconciles from its own state when it starts). */
static int cni_cmd_del(const struct cniconf *c, const struct cniconf_args *a)
{
	const char *netns = cni_env("CNI_NETNS");
	char err[512], uid[sizeof(a->pod_namespace) + sizeof(a->pod_name) + 1];
	int ret;

	if (!cni_env("CNI_CONTAINERID"))
		return cni_fail(4, "CNI_CONTAINERID must be set for DEL", NULL);
	if (netns) {
		ret = cninft_remove(netns, err, sizeof(err));
		if (ret < 0 && ret != -ENOENT)
			log_warn("DEL: %s", err);
	}
	if (!cni_pod_wanted(c, a, "DEL"))
		return 0;
	snprintf(uid, sizeof(uid), "%s/%s", a->pod_namespace, a->pod_name);
	ret = enroll_del(c->socket, uid, ENROLL_TIMEOUT_MS, err, sizeof(err));
	if (ret < 0)
		log_warn("DEL %s: %s (ignored: DEL must succeed)", uid, err);
	else
		log_info("DEL %s: capture rules removed, weftd forgot the pod", uid);
	return 0;
}

static int cni_cmd_check(const struct cniconf *c, const struct cniconf_args *a)
{
	const char *netns = cni_env("CNI_NETNS");
	char err[512];

	if (!cni_env("CNI_CONTAINERID") || !netns)
		return cni_fail(4, "CNI_CONTAINERID and CNI_NETNS must be set for CHECK", NULL);
	if (!c->prev_result)
		return cni_fail(7, "weft-cni is a chained plugin and got no prevResult", NULL);
	if (!cni_pod_wanted(c, a, "CHECK"))
		return 0;
	if (cninft_check(netns, err, sizeof(err)) < 0)
		return cni_fail(CNI_ERR_NFTABLES, "weft capture rules check failed", err);
	return 0;
}

/* Send our log lines (and libnftables' stray stderr) to log_file: a
 * runtime shows a plugin's stderr nowhere useful. */
static void cni_log_open(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0) {
		log_warn("log_file %s: %s; logging to stderr", path, strerror(errno));
		return;
	}
	if (fd != STDERR_FILENO) {
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
}

int main(void)
{
	const char *cmd = cni_env("CNI_COMMAND");
	struct cniconf_args args;
	struct cniconf *c;
	char err[CNICONF_ERR_MAX];
	size_t len = 0;
	char *in = NULL;
	int ret, errc;

	log_set_component("weft-cni");
	if (!cmd)
		return cni_fail(4, "CNI_COMMAND is not set", "weft-cni is a CNI plugin: the "
				"container runtime runs it with CNI_COMMAND=ADD|DEL|CHECK|VERSION");
	ret = cni_stdin_read(&in, &len);
	if (ret < 0)
		return cni_fail(5, "cannot read the network config from stdin", strerror(-ret));
	if (strcmp(cmd, "VERSION") == 0) {
		ret = cni_cmd_version(in, len);
		free(in);
		return ret;
	}
	c = cniconf_parse(in, len, &errc, err, sizeof(err));
	free(in);
	if (!c)
		return cni_fail(errc == CNICONF_EVERSION ? 1 : errc == CNICONF_EDECODE ? 6 : 7,
				"invalid network config", err);
	cni_version = c->cni_version;
	if (c->log_file)
		cni_log_open(c->log_file);
	if (cniconf_args_parse(getenv("CNI_ARGS"), &args, err, sizeof(err)) < 0) {
		ret = cni_fail(4, "invalid CNI_ARGS", err);
		goto out;
	}
	if (strcmp(cmd, "ADD") == 0)
		ret = cni_cmd_add(c, &args);
	else if (strcmp(cmd, "DEL") == 0)
		ret = cni_cmd_del(c, &args);
	else if (strcmp(cmd, "CHECK") == 0)
		ret = cni_cmd_check(c, &args);
	else
		ret = cni_fail(4, "unknown CNI_COMMAND", "expected ADD, DEL, CHECK or VERSION");
out:
	/* cni_version points into c until here. */
	fflush(stdout);
	cniconf_free(c);
	return ret;
}
