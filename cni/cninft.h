/* SPDX-License-Identifier: Apache-2.0 */
/* The capture rules of DESIGN §5 in a pod's network namespace, through
 * libnftables: an "inet weft" table redirecting the pod's outbound TCP to
 * :15001 and inbound TCP to :15006, sparing loopback and weftd's own
 * sockets (SO_MARK 0x539). */
#ifndef CNI_CNINFT_H
#define CNI_CNINFT_H

#include <stddef.h>

#define CNINFT_MARK 0x539
#define CNINFT_PORT_OUT 15001
#define CNINFT_PORT_IN 15006

/* The ruleset installed, as nft(8) text (for logs and tests). */
const char *cninft_ruleset(void);

/* Each enters the netns at netns_path, runs one nft transaction and comes
 * back to the caller's namespace. They return 0 or -errno with err set;
 * -ENOENT means the netns itself is gone. */

/* Replace any existing weft table with a fresh one, atomically. */
int cninft_install(const char *netns_path, char *err, size_t errlen);
/* Delete the weft table; 0 when it was not there. */
int cninft_remove(const char *netns_path, char *err, size_t errlen);
/* 0 when the table and both redirects are in place, -ENODATA if not. */
int cninft_check(const char *netns_path, char *err, size_t errlen);

#endif
