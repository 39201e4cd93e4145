/* SPDX-License-Identifier: Apache-2.0 */
/* weft-cni's input parsing: chained configs with 0.4.0 and 1.0.0 prevResult
 * shapes, weft's own keys and their defaults, every rejection class (bad
 * JSON, wrong types, unsupported version, bad addresses, limits), and the
 * CNI_ARGS string. */
#include <errno.h>
#include <string.h>

#include <json-c/json.h>

#include "../../../cni/cniconf.h"

#include "../check.h"

static struct cniconf *parse(const char *s, int *errc, char *err)
{
	return cniconf_parse(s, strlen(s), errc, err, CNICONF_ERR_MAX);
}

/* The shape the bridge plugin hands on under CNI 1.0.0. */
static const char conf_v1[] =
	"{\"cniVersion\":\"1.0.0\",\"name\":\"podnet\",\"type\":\"weft-cni\","
	"\"socket\":\"/tmp/weft-test/cni.sock\",\"log_file\":\"/tmp/weft-cni.log\","
	"\"exclude_namespaces\":[\"kube-system\",\"weft-system\"],"
	"\"prevResult\":{\"cniVersion\":\"1.0.0\","
	"\"interfaces\":[{\"name\":\"cni0\",\"mac\":\"aa:bb:cc:dd:ee:ff\"},"
	"{\"name\":\"eth0\",\"mac\":\"11:22:33:44:55:66\",\"sandbox\":\"/run/netns/p1\"}],"
	"\"ips\":[{\"interface\":1,\"address\":\"10.244.1.5/24\",\"gateway\":\"10.244.1.1\"},"
	"{\"interface\":1,\"address\":\"fd00:0:0::0005/64\"}],"
	"\"routes\":[{\"dst\":\"0.0.0.0/0\"}],\"dns\":{}}}\n";

/* CNI 0.4.0: ips[] carry "version"; prevResult lacks cniVersion here, so
 * the parser must add the config's. */
static const char conf_v04[] =
	"{\"cniVersion\":\"0.4.0\",\"name\":\"podnet\",\"type\":\"weft-cni\","
	"\"prevResult\":{\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"/proc/1/ns/net\"}],"
	"\"ips\":[{\"version\":\"4\",\"address\":\"10.244.2.7/24\",\"gateway\":\"10.244.2.1\","
	"\"interface\":0}]}}";

static void test_good_v1(void)
{
	char err[CNICONF_ERR_MAX] = "";
	struct json_object *prev, *v;
	struct cniconf *c;
	int errc = -1;

	c = parse(conf_v1, &errc, err);
	CHECK(c != NULL);
	if (!c) {
		fprintf(stderr, "  err: %s\n", err);
		return;
	}
	CHECK_EQ_INT(errc, 0);
	CHECK_EQ_STR(c->cni_version, "1.0.0");
	CHECK_EQ_STR(c->name, "podnet");
	CHECK_EQ_STR(c->type, "weft-cni");
	CHECK_EQ_STR(c->socket, "/tmp/weft-test/cni.sock");
	CHECK_EQ_STR(c->log_file, "/tmp/weft-cni.log");
	CHECK_EQ_INT(c->n_exclude_ns, 2);
	CHECK(cniconf_excluded(c, "kube-system"));
	CHECK(cniconf_excluded(c, "weft-system"));
	CHECK(!cniconf_excluded(c, "default"));
	CHECK(!cniconf_excluded(c, "kube"));
	CHECK_EQ_INT(c->n_ips, 2);
	CHECK_EQ_STR(c->ips[0], "10.244.1.5");
	CHECK_EQ_STR(c->ips[1], "fd00::5");	/* canonical form */
	/* The result printed is prevResult, unchanged in content. */
	CHECK(c->prev_result != NULL);
	prev = json_tokener_parse(c->prev_result);
	CHECK(prev != NULL);
	if (prev) {
		CHECK(json_object_object_get_ex(prev, "cniVersion", &v));
		CHECK_EQ_STR(json_object_get_string(v), "1.0.0");
		CHECK(json_object_object_get_ex(prev, "interfaces", &v));
		CHECK_EQ_INT(json_object_array_length(v), 2);
		CHECK(json_object_object_get_ex(prev, "ips", &v));
		v = json_object_array_get_idx(v, 0);
		CHECK(json_object_object_get_ex(v, "address", &v));
		CHECK_EQ_STR(json_object_get_string(v), "10.244.1.5/24");
		CHECK(json_object_object_get_ex(prev, "routes", &v));
		json_object_put(prev);
	}
	CHECK(strstr(c->prev_result, "\"sandbox\":\"/run/netns/p1\"") != NULL);
	cniconf_free(c);
}

static void test_good_v04(void)
{
	char err[CNICONF_ERR_MAX] = "";
	struct json_object *prev, *v;
	struct cniconf *c;
	int errc = -1;

	c = parse(conf_v04, &errc, err);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_EQ_STR(c->cni_version, "0.4.0");
	CHECK_EQ_STR(c->socket, CNICONF_SOCKET_DEFAULT);
	CHECK(c->log_file == NULL);
	CHECK_EQ_INT(c->n_exclude_ns, 0);
	CHECK(!cniconf_excluded(c, "kube-system"));
	CHECK_EQ_INT(c->n_ips, 1);
	CHECK_EQ_STR(c->ips[0], "10.244.2.7");
	prev = json_tokener_parse(c->prev_result);
	CHECK(prev && json_object_object_get_ex(prev, "cniVersion", &v));
	if (prev) {
		CHECK_EQ_STR(json_object_get_string(v), "0.4.0");
		CHECK(json_object_object_get_ex(prev, "ips", &v));
		v = json_object_array_get_idx(v, 0);
		CHECK(json_object_object_get_ex(v, "version", &v));
		CHECK_EQ_STR(json_object_get_string(v), "4");
		json_object_put(prev);
	}
	cniconf_free(c);
}

static void test_no_prev_result(void)
{
	char err[CNICONF_ERR_MAX] = "";
	struct cniconf *c;
	int errc = -1;

	/* Parses: DEL and VERSION do not need it; ADD checks prev_result. */
	c = parse("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"weft-cni\"}", &errc, err);
	CHECK(c != NULL);
	if (c) {
		CHECK(c->prev_result == NULL);
		CHECK_EQ_INT(c->n_ips, 0);
		cniconf_free(c);
	}
	c = parse("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"weft-cni\","
		  "\"prevResult\":null}", &errc, err);
	CHECK(c != NULL && c->prev_result == NULL);
	cniconf_free(c);
	/* A prevResult without ips is legal (weftd then has the registry's). */
	c = parse("{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"weft-cni\","
		  "\"prevResult\":{\"interfaces\":[]}}", &errc, err);
	CHECK(c != NULL && c->prev_result != NULL && c->n_ips == 0);
	cniconf_free(c);
}

struct bad_case {
	const char *json;
	int errc;
	const char *err_has;
};

static void test_bad(void)
{
	static const struct bad_case cases[] = {
		{ "{bad", CNICONF_EDECODE, "not valid JSON" },
		{ "{\"cniVersion\":\"1.0.0\"", CNICONF_EDECODE, "unexpected end" },
		{ "", CNICONF_EDECODE, "empty" },
		{ "[1,2]", CNICONF_EDECODE, "must be a JSON object" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\"} x", CNICONF_EDECODE,
		  "at offset 45" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\"} {}", CNICONF_EDECODE,
		  "offset 45" },
		{ "{'cniVersion':'1.0.0'}", CNICONF_EDECODE, "not valid JSON" },
		{ "{\"name\":\"n\",\"type\":\"t\"}", CNICONF_EINVALID, "lacks \"cniVersion\"" },
		{ "{\"cniVersion\":\"1.0.0\",\"type\":\"t\"}", CNICONF_EINVALID, "lacks \"name\"" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":7,\"type\":\"t\"}", CNICONF_EINVALID,
		  "\"name\" must be a string" },
		{ "{\"cniVersion\":\"0.2.0\",\"name\":\"n\",\"type\":\"t\"}", CNICONF_EVERSION,
		  "not supported" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\",\"socket\":\"rel.sock\"}",
		  CNICONF_EINVALID, "absolute path" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\","
		  "\"exclude_namespaces\":\"kube-system\"}", CNICONF_EINVALID, "array of strings" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\","
		  "\"exclude_namespaces\":[1]}", CNICONF_EINVALID, "must be a string" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\",\"prevResult\":[]}",
		  CNICONF_EINVALID, "must be an object" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\","
		  "\"prevResult\":{\"ips\":{}}}", CNICONF_EINVALID, "must be an array" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\","
		  "\"prevResult\":{\"ips\":[{\"gateway\":\"10.0.0.1\"}]}}", CNICONF_EINVALID,
		  "lacks a string \"address\"" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\","
		  "\"prevResult\":{\"ips\":[{\"address\":\"10.244.1.300/24\"}]}}",
		  CNICONF_EINVALID, "not an IP address" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\","
		  "\"prevResult\":{\"ips\":[{\"address\":\"10.244.1.3/33\"}]}}",
		  CNICONF_EINVALID, "not an IP address" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\","
		  "\"prevResult\":{\"ips\":[{\"address\":\"10.244.1.3/\"}]}}",
		  CNICONF_EINVALID, "not an IP address" },
		{ "{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"t\","
		  "\"prevResult\":{\"ips\":[{\"address\":\"pod.local/24\"}]}}",
		  CNICONF_EINVALID, "not an IP address" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[CNICONF_ERR_MAX] = "";
		struct cniconf *c;
		int errc = 0;

		c = parse(cases[i].json, &errc, err);
		CHECK(c == NULL);
		cniconf_free(c);
		CHECK_EQ_INT(errc, cases[i].errc);
		if (!strstr(err, cases[i].err_has)) {
			fprintf(stderr, "case %zu: error \"%s\" lacks \"%s\"\n", i, err,
				cases[i].err_has);
			CHECK(0);
		}
	}
}

static void test_limits(void)
{
	char buf[8192], err[CNICONF_ERR_MAX];
	struct cniconf *c;
	size_t n;
	int errc;

	/* One address more than the bound. */
	n = (size_t)snprintf(buf, sizeof(buf), "{\"cniVersion\":\"1.0.0\",\"name\":\"n\","
			     "\"type\":\"t\",\"prevResult\":{\"ips\":[");
	for (int i = 0; i <= CNICONF_MAX_IPS; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s{\"address\":\"10.0.0.%d/24\"}",
				      i ? "," : "", i + 1);
	snprintf(buf + n, sizeof(buf) - n, "]}}");
	c = parse(buf, &errc, err);
	CHECK(c == NULL);
	CHECK(strstr(err, "more than") != NULL);

	/* Nesting deeper than any CNI config is refused, not recursed. */
	n = (size_t)snprintf(buf, sizeof(buf), "{\"cniVersion\":\"1.0.0\",\"name\":\"n\","
			     "\"type\":\"t\",\"x\":");
	for (int i = 0; i < 100; i++)
		buf[n++] = '[';
	for (int i = 0; i < 100; i++)
		buf[n++] = ']';
	buf[n++] = '}';
	buf[n] = '\0';
	c = parse(buf, &errc, err);
	CHECK(c == NULL);
	CHECK_EQ_INT(errc, CNICONF_EDECODE);

	/* An embedded NUL is not JSON text. */
	c = cniconf_parse("{\"a\":1}\0{}", 10, &errc, err, sizeof(err));
	CHECK(c == NULL);
	CHECK(strstr(err, "NUL") != NULL);
}

static void test_args(void)
{
	char err[CNICONF_ERR_MAX] = "";
	struct cniconf_args a;

	CHECK_EQ_INT(cniconf_args_parse("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;"
					"K8S_POD_NAME=web-7d4b9c-x2x;K8S_POD_INFRA_CONTAINER_ID=abc;"
					"K8S_POD_UID=6c1b1f4e-2a9e-4e5a-9d2b-0d8f9a7b6c5d",
					&a, err, sizeof(err)), 0);
	CHECK_EQ_STR(a.pod_namespace, "default");
	CHECK_EQ_STR(a.pod_name, "web-7d4b9c-x2x");
	CHECK_EQ_STR(a.pod_uid, "6c1b1f4e-2a9e-4e5a-9d2b-0d8f9a7b6c5d");

	/* Absent, empty and trailing separators are fine. */
	CHECK_EQ_INT(cniconf_args_parse(NULL, &a, err, sizeof(err)), 0);
	CHECK_EQ_STR(a.pod_namespace, "");
	CHECK_EQ_INT(cniconf_args_parse("", &a, err, sizeof(err)), 0);
	CHECK_EQ_INT(cniconf_args_parse("K8S_POD_NAME=a;;K8S_POD_NAMESPACE=b;", &a, err,
					sizeof(err)), 0);
	CHECK_EQ_STR(a.pod_name, "a");
	CHECK_EQ_STR(a.pod_namespace, "b");
	/* A key that merely starts like ours is someone else's. */
	CHECK_EQ_INT(cniconf_args_parse("K8S_POD_NAMESPACEX=evil;K8S_POD_NAMES=x", &a, err,
					sizeof(err)), 0);
	CHECK_EQ_STR(a.pod_namespace, "");
	CHECK_EQ_STR(a.pod_name, "");
	/* Unknown keys may carry anything. */
	CHECK_EQ_INT(cniconf_args_parse("FOO=a/b c;K8S_POD_NAME=p", &a, err, sizeof(err)), 0);
	CHECK_EQ_STR(a.pod_name, "p");

	/* Rejections. */
	CHECK_EQ_INT(cniconf_args_parse("K8S_POD_NAME", &a, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "KEY=VALUE") != NULL);
	CHECK_EQ_INT(cniconf_args_parse("=x", &a, err, sizeof(err)), -EINVAL);
	CHECK_EQ_INT(cniconf_args_parse("K8S_POD_NAMESPACE=a/b", &a, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "K8S_POD_NAMESPACE") != NULL);
	CHECK_EQ_INT(cniconf_args_parse("K8S_POD_NAME=a\"b", &a, err, sizeof(err)), -EINVAL);
	{
		char big[400];

		snprintf(big, sizeof(big), "K8S_POD_NAMESPACE=%0*d", 64, 0);
		CHECK_EQ_INT(cniconf_args_parse(big, &a, err, sizeof(err)), -EINVAL);
		snprintf(big, sizeof(big), "K8S_POD_NAMESPACE=%0*d", 63, 0);
		CHECK_EQ_INT(cniconf_args_parse(big, &a, err, sizeof(err)), 0);
		CHECK_EQ_INT(strlen(a.pod_namespace), 63);
	}
}

static void test_versions(void)
{
	CHECK(cniconf_version_supported("1.0.0"));
	CHECK(cniconf_version_supported("0.4.0"));
	CHECK(cniconf_version_supported("0.3.1"));
	CHECK(!cniconf_version_supported("0.2.0"));
	CHECK(!cniconf_version_supported("1.1.0"));
	CHECK(!cniconf_version_supported(NULL));
	{
		struct json_object *v = json_tokener_parse(cniconf_versions_json());

		CHECK(v && json_object_is_type(v, json_type_array));
		CHECK_EQ_INT(json_object_array_length(v), 4);
		json_object_put(v);
	}
}

int main(void)
{
	test_good_v1();
	test_good_v04();
	test_no_prev_result();
	test_bad();
	test_limits();
	test_args();
	test_versions();
	return check_done("test_cniconf");
}
