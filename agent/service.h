/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's gRPC services: istio.v1.auth.IstioCertificateService
 * (CreateCertificate) and weft.registry.v1.Registry (Watch). */
#ifndef AGENT_SERVICE_H
#define AGENT_SERVICE_H

#include <stddef.h>
#include <stdint.h>

struct agent;
struct grpc_server;
struct registry;
struct service;

/* Why a call was refused, for the agent's metrics (a bounded set). */
enum service_refusal {
	SERVICE_REFUSED_UNAUTHENTICATED,	/* no node certificate or token */
	SERVICE_REFUSED_QUOTA,			/* the node's calls or watches */
	SERVICE_REFUSED_MALFORMED,		/* a request we cannot read */
	SERVICE_REFUSED_BAD_CSR,
	SERVICE_REFUSED_NOT_AUTHORIZED,		/* an identity the node may not have */
	SERVICE_REFUSED_CSR_MISMATCH,		/* the CSR names another identity */
	SERVICE_REFUSED_UNAVAILABLE,		/* draining, out of memory, signing */
	SERVICE_REFUSALS
};

enum service_method { SERVICE_CERT, SERVICE_WATCH, SERVICE_METHODS };

struct service_stats {
	uint64_t certs_issued;
	uint64_t refused[SERVICE_METHODS][SERVICE_REFUSALS];
	unsigned watches;		/* Watch streams open now */
	uint64_t watches_opened;
	uint64_t watches_dropped;	/* ended because the node did not read */
	uint64_t updates_sent;		/* registry deltas sent, all streams */
};

struct service *service_new(struct agent *a);
void service_free(struct service *s);
/* The method table for new gRPC sessions. */
const struct grpc_server *service_grpc(const struct service *s);
/* Registry changed: send the delta to every Watch stream. */
void service_registry_changed(void *service, const struct registry *prev,
			      const struct registry *next, uint64_t version);
const struct service_stats *service_stats(const struct service *s);
/* End every Watch stream (drain). */
void service_drain(struct service *s);

/* Pure request checks, exposed for unit tests and the fuzzer. */
/* 1 if the serialized IstioCertificateRequest nests metadata no deeper than
 * max_depth (protobuf-c's unpacker recurses without a limit). */
int service_request_depth_ok(const uint8_t *msg, size_t len, unsigned max_depth);

#endif
