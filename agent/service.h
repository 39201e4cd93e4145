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

struct service *service_new(struct agent *a);
void service_free(struct service *s);
/* The method table for new gRPC sessions. */
const struct grpc_server *service_grpc(const struct service *s);
/* Registry changed: send the delta to every Watch stream. */
void service_registry_changed(void *service, const struct registry *prev,
			      const struct registry *next, uint64_t version);
/* End every Watch stream (drain). */
void service_drain(struct service *s);

/* Pure request checks, exposed for unit tests and the fuzzer. */
/* 1 if the serialized IstioCertificateRequest nests metadata no deeper than
 * max_depth (protobuf-c's unpacker recurses without a limit). */
int service_request_depth_ok(const uint8_t *msg, size_t len, unsigned max_depth);

#endif
