/* SPDX-License-Identifier: Apache-2.0 */
/* Agent config parsing: defaults, every key, and errors naming file:line. */
#include "../check.h"
#include "../../../agent/config.h"

static const char good[] =
	"listen: 127.0.0.1:15012\n"
	"metrics_listen: 127.0.0.1:15014\n"
	"trust_domain: example.org\n"
	"state_dir: state\n"
	"token_file: /etc/weft/tokens\n"
	"registry_file: registry.yaml\n"
	"ttl_default: 90m\n"
	"ttl_max: 2d\n"
	"dns_names: [agent.example.org, localhost]\n"
	"max_connections: 100\n"
	"handshake_timeout_ms: 500\n"
	"log_level: debug\n";

static void bad(const char *doc, const char *want)
{
	char err[CONFIG_ERR_MAX];
	struct agent_config *c = config_parse(doc, strlen(doc), "a.yaml", "/base", err, sizeof(err));

	CHECK(c == NULL);
	if (c) {
		config_free(c);
		return;
	}
	if (!strstr(err, want))
		fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, want);
	CHECK(strstr(err, want) != NULL);
}

int main(void)
{
	char err[CONFIG_ERR_MAX];
	struct agent_config *c;

	c = config_parse(good, sizeof(good) - 1, "a.yaml", "/base", err, sizeof(err));
	CHECK(c != NULL);
	if (c) {
		CHECK_EQ_STR(c->listen, "127.0.0.1:15012");
		CHECK_EQ_STR(c->metrics_listen, "127.0.0.1:15014");
		CHECK_EQ_STR(c->trust_domain, "example.org");
		CHECK_EQ_STR(c->state_dir, "/base/state");
		CHECK_EQ_STR(c->token_file, "/etc/weft/tokens");
		CHECK_EQ_STR(c->registry_file, "/base/registry.yaml");
		CHECK_EQ_INT(c->ttl_default_s, 5400);
		CHECK_EQ_INT(c->ttl_max_s, 172800);
		CHECK_EQ_INT(c->dns_names.n, 2);
		CHECK_EQ_STR(c->dns_names.v[0], "agent.example.org");
		CHECK_EQ_INT(c->max_connections, 100);
		CHECK_EQ_INT(c->handshake_timeout_ms, 500);
		CHECK_EQ_STR(c->log_level, "debug");
		config_free(c);
	}

	const char min[] = "token_file: t\nregistry_file: r\n";
	c = config_parse(min, sizeof(min) - 1, "a.yaml", "/b", err, sizeof(err));
	CHECK(c != NULL);
	if (c) {
		CHECK_EQ_STR(c->listen, "0.0.0.0:15012");
		CHECK_EQ_STR(c->metrics_listen, "0.0.0.0:15014");
		CHECK_EQ_STR(c->trust_domain, "cluster.local");
		CHECK_EQ_INT(c->ttl_default_s, 86400);
		CHECK_EQ_INT(c->dns_names.n, 3);
		CHECK_EQ_STR(c->dns_names.v[1], "weft-agent.weft-system.svc");
		config_free(c);
	}

	/* An unset ttl_default follows a lower ttl_max. */
	const char lower[] = "token_file: t\nregistry_file: r\nttl_max: 2h\n";
	c = config_parse(lower, sizeof(lower) - 1, "a.yaml", "/b", err, sizeof(err));
	CHECK(c != NULL);
	if (c) {
		CHECK_EQ_INT(c->ttl_default_s, 7200);
		CHECK_EQ_INT(c->ttl_max_s, 7200);
		config_free(c);
	}

	bad("token_file: t\nregistry_file: r\nlisen: x\n", "a.yaml:3: unknown key \"lisen\"");
	bad("registry_file: r\n", "token_file is required");
	bad("token_file: t\n", "registry_file is required");
	bad("token_file: t\nregistry_file: r\nttl_max: 1h\nttl_default: 2h\n", "above ttl_max");
	bad("token_file: t\nregistry_file: r\nttl_max: 5x\n", "a.yaml:3: ttl_max: unknown unit");
	bad("token_file: t\nregistry_file: r\nttl_max: -5\n", "not a duration");
	bad("token_file: t\nregistry_file: r\nttl_default: 0\n", "a.yaml:3: ttl_default: 0 is out of range");
	bad("token_file: t\nregistry_file: t\ntoken_file: u\n", "a.yaml:3: duplicate key \"token_file\"");
	bad("token_file: t\nregistry_file: r\nmax_connections: 0\n", "a.yaml:3: max_connections");
	bad("token_file: t\nregistry_file: r\ndns_names: x\n", "expected a list");
	bad("token_file: t\nregistry_file: r\ndns_names: [ok, Bad_Name]\n",
	    "a.yaml:3: dns_names: \"Bad_Name\" is not a lowercase DNS name");
	bad("token_file: t\nregistry_file: r\n"
	    "dns_names: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q]\n", "at most 16");
	bad("token_file: t\nregistry_file: r\nlog_level: loud\n", "log_level must be");
	bad("token_file: t\nregistry_file: r\nlisten: 15012\n", "expected host:port");
	bad("token_file: t\nregistry_file: r\nmetrics_listen: localhost:15014\n",
	    "metrics_listen: expected a numeric host:port or off");
	c = config_parse("token_file: t\nregistry_file: r\nmetrics_listen: off\n", 51, "a.yaml",
			 "/b", err, sizeof(err));
	CHECK(c != NULL);
	config_free(c);
	bad("token_file: [t\n", "a.yaml:2: YAML syntax");
	bad("- a\n- b\n", "expected a mapping");
	bad("token_file: t\nregistry_file: r\nca_cert_file: c\n", "go together");

	/* Remote networks. */
#define RN "token_file: t\nregistry_file: r\ntrust_domain: west.local\nremote_networks:\n"
	const char remotes[] = RN
		"  - {network: east, trust_domain: east.local, agent_address: 192.168.50.3:15012,\n"
		"     vip_cidr: 10.97.0.0/16}\n"
		"  - {network: south, trust_domain: south.local, agent_address: 10.0.0.1:15012,\n"
		"     vip_cidr: 10.98.0.0/24, server_name: agent.south, form: istio}\n";
	c = config_parse(remotes, sizeof(remotes) - 1, "a.yaml", "/b", err, sizeof(err));
	CHECK(c != NULL);
	if (c) {
		struct agent_remote *r = c->remote_networks.v;

		CHECK_EQ_INT(c->remote_networks.n, 2);
		CHECK_EQ_STR(r[0].network, "east");
		CHECK_EQ_STR(r[0].server_name, "weft-agent");
		CHECK_EQ_INT(r[0].vip_base, 0x0a610000);
		CHECK_EQ_INT(r[0].vip_prefix, 16);
		CHECK_EQ_STR(r[1].server_name, "agent.south");
		CHECK_EQ_INT(r[1].vip_prefix, 24);
		CHECK_EQ_INT(r[0].form, CONFIG_FORM_POOLED);
		CHECK_EQ_INT(r[1].form, CONFIG_FORM_ISTIO);
		config_free(c);
	}
	bad(RN "  - {network: east, trust_domain: east.local, agent_address: 1.2.3.4:1}\n",
	    "a.yaml:5: remote_networks is missing required field \"vip_cidr\"");
	bad(RN "  - {network: east, trust_domain: east.local, agent_address: 1.2.3.4:1,"
	    " vip_cidr: 10.97.0.0/16, form: sidecar}\n", "form");
	bad("token_file: t\nregistry_file: r\nexport_to: [\"west local\"]\n",
	    "is not a SPIFFE trust domain");
	c = config_parse("token_file: t\nregistry_file: r\nexport_to: [west.local]\n", 55, "a.yaml",
			 "/b", err, sizeof(err));
	CHECK(c != NULL && c->export_to.n == 1);
	config_free(c);
	bad(RN "  - {network: East, trust_domain: east.local, agent_address: 1.2.3.4:1,"
	    " vip_cidr: 10.97.0.0/16}\n", "is not a network name");
	bad(RN "  - {network: east, trust_domain: east.local, agent_address: agent:1,"
	    " vip_cidr: 10.97.0.0/16}\n", "is not a numeric host:port");
	bad(RN "  - {network: east, trust_domain: \"east local\", agent_address: 1.2.3.4:1,"
	    " vip_cidr: 10.97.0.0/16}\n", "is not a SPIFFE trust domain");
	bad(RN "  - {network: east, trust_domain: west.local, agent_address: 1.2.3.4:1,"
	    " vip_cidr: 10.97.0.0/16}\n", "own trust domain");
	for (const char *cidr = "10.97.0.1/16\0" "10.97.0.0/8\0" "10.97.0.0/31\0" "10.97.0.0\0"
				"fd00::/64\0" "10.97.0.0/016\0" "10.97.0.0/1x\0"; *cidr;
	     cidr += strlen(cidr) + 1) {
		char doc[512];

		snprintf(doc, sizeof(doc), RN "  - {network: east, trust_domain: east.local, "
			 "agent_address: 1.2.3.4:1, vip_cidr: \"%s\"}\n", cidr);
		bad(doc, "is not an IPv4 range");
	}
	bad(RN "  - {network: east, trust_domain: east.local, agent_address: 1.2.3.4:1,"
	    " vip_cidr: 10.97.0.0/16}\n"
	    "  - {network: east, trust_domain: south.local, agent_address: 1.2.3.4:1,"
	    " vip_cidr: 10.98.0.0/16}\n", "east and east have the same or overlapping network");
	bad(RN "  - {network: east, trust_domain: east.local, agent_address: 1.2.3.4:1,"
	    " vip_cidr: 10.97.0.0/16}\n"
	    "  - {network: south, trust_domain: east.local, agent_address: 1.2.3.4:1,"
	    " vip_cidr: 10.98.0.0/16}\n", "overlapping trust_domain");
	bad(RN "  - {network: east, trust_domain: east.local, agent_address: 1.2.3.4:1,"
	    " vip_cidr: 10.97.0.0/16}\n"
	    "  - {network: south, trust_domain: south.local, agent_address: 1.2.3.4:1,"
	    " vip_cidr: 10.97.128.0/24}\n", "overlapping vip_cidr");
#undef RN
	return check_done("config");
}
