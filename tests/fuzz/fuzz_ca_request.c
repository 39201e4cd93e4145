/* SPDX-License-Identifier: Apache-2.0 */
/* Fuzz what the agent does with a CreateCertificate message body: the
 * nesting guard, protobuf-c unpacking and CSR parsing of the csr field. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ca.pb-c.h"
#include "../../agent/csr.h"
#include "../../agent/service.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Istio__V1__Auth__IstioCertificateRequest *req;
	struct csr c;
	char why[512];

	if (!service_request_depth_ok(data, size, 16))
		return 0;
	req = istio__v1__auth__istio_certificate_request__unpack(NULL, size, data);
	if (!req)
		return 0;
	memset(&c, 0, sizeof(c));
	if (req->csr && csr_parse(req->csr, strlen(req->csr), &c, why, sizeof(why)) == 0)
		csr_deinit(&c);
	istio__v1__auth__istio_certificate_request__free_unpacked(req, NULL);
	return 0;
}
