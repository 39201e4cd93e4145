/* SPDX-License-Identifier: Apache-2.0 */
/* Socket address text: parse, format, round trips and rejects. */
#include <netinet/in.h>

#include "../check.h"
#include <weft/sockaddr.h>

static void round_trip(const char *in, const char *want)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char out[64];

	CHECK_EQ_INT(sockaddr_parse(in, &ss, &len), 0);
	CHECK_EQ_STR(sockaddr_str(&ss, out, sizeof(out)), want);
	CHECK(len == (ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
					      : sizeof(struct sockaddr_in6)));
}

int main(void)
{
	static const char *const bad[] = {
		"", "1.2.3.4", "1.2.3.4:", ":80", "1.2.3.4:65536", "1.2.3.4:-1", "1.2.3.4:8x",
		"::1:80", "[1.2.3.4]:80", "[::1:80", "::1]:80", "host:80", "1.2.3.256:80",
	};
	struct sockaddr_storage ss;
	socklen_t len;
	char out[64];

	round_trip("10.244.1.2:8080", "10.244.1.2:8080");
	round_trip("0.0.0.0:0", "0.0.0.0:0");
	round_trip("[::1]:15012", "[::1]:15012");
	round_trip("[fd00:0::0001]:443", "[fd00::1]:443");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = sockaddr_parse(bad[i], &ss, &len);
		if (rc == 0)
			fprintf(stderr, "accepted \"%s\"\n", bad[i]);
		CHECK(rc < 0);
	}
	CHECK_EQ_INT(sockaddr_from_ip("10.0.0.1", 15008, &ss, &len), 0);
	CHECK_EQ_STR(sockaddr_str(&ss, out, sizeof(out)), "10.0.0.1:15008");
	CHECK_EQ_INT(sockaddr_port(&ss), 15008);
	CHECK_EQ_INT(sockaddr_from_ip("fd00::2", 80, &ss, &len), 0);
	CHECK_EQ_STR(sockaddr_str(&ss, out, sizeof(out)), "[fd00::2]:80");
	CHECK(sockaddr_from_ip("10.0.0.1/24", 1, &ss, &len) < 0);
	CHECK(sockaddr_from_ip("nope", 1, &ss, &len) < 0);
	ss.ss_family = AF_UNSPEC;
	CHECK_EQ_STR(sockaddr_str(&ss, out, sizeof(out)), "?");
	CHECK_EQ_INT(sockaddr_port(&ss), 0);
	return check_done("sockaddr");
}
