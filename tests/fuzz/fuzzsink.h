/* SPDX-License-Identifier: Apache-2.0 */
/* The output sink the HTTP/2 fuzzers (grpc, grpcc, h2tun) flush into: it
 * takes a byte budget per flush, so a target can play a socket that fills
 * up. Header-only: each fuzzer is one translation unit. */
#ifndef FUZZ_FUZZSINK_H
#define FUZZ_FUZZSINK_H

#include <stddef.h>
#include <stdint.h>

struct fuzz_sink {
	size_t budget;			/* bytes the sink takes this flush */
	size_t total;
};

/* The send callback: counts the bytes against the budget. */
static int fuzz_send(void *io, const uint8_t *p, size_t n)
{
	struct fuzz_sink *k = io;

	(void)p;
	k->total += n;
	k->budget = n >= k->budget ? 0 : k->budget - n;
	return 0;
}

/* The space callback: what is left of the budget. */
static size_t fuzz_space(void *io)
{
	return ((struct fuzz_sink *)io)->budget;
}

#endif
