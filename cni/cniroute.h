/* SPDX-License-Identifier: Apache-2.0 */
/* Policy routing in a pod netns for transparent delivery: weftd connects
 * to the app from the client's own address (IP_TRANSPARENT); the app's
 * replies to that address belong to a connection weftd marked, and must be
 * routed back to weftd's socket instead of out of the pod. Like Istio's
 * in-pod mode: fwmark 0x111 -> table 100 -> "local default dev lo". Runs
 * in the current network namespace (the caller has entered the pod's). */
#ifndef CNI_CNIROUTE_H
#define CNI_CNIROUTE_H

#include <stddef.h>

#define CNIROUTE_MARK 0x111
#define CNIROUTE_MASK 0xfff
#define CNIROUTE_TABLE 100
#define CNIROUTE_PRIO 32764

/* Add the rule and route (IPv4 and IPv6); existing ones are fine. */
int cniroute_install(char *err, size_t errlen);
/* Remove them; missing ones are fine. */
int cniroute_remove(char *err, size_t errlen);

#endif
