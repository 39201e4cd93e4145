/* SPDX-License-Identifier: Apache-2.0 */
/* Keeps the registry file loaded: parses it at start, watches its folder
 * with inotify through the loop, reloads on change, and keeps the last good
 * registry in service when an edit does not parse. */
#ifndef AGENT_REGWATCH_H
#define AGENT_REGWATCH_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct registry;
struct regwatch;

/* Called after a successful reload that changed something; prev is freed
 * after the callback returns. */
typedef void (*regwatch_change_fn)(void *arg, const struct registry *prev,
				   const struct registry *next, uint64_t version);

/* Load path (must parse) and start watching it. NULL with err otherwise. */
struct regwatch *regwatch_new(struct loop *l, const char *path,
			      regwatch_change_fn on_change, void *arg,
			      char *err, size_t errlen);
void regwatch_free(struct regwatch *rw);
/* Current registry and its version (starts at 1). */
const struct registry *regwatch_current(const struct regwatch *rw, uint64_t *version);
/* Replace the federated bundles (taking b, n entries, sorted) that every
 * registry carries from now on, and reload the file; the nodes get them as
 * a change (none when they are the same and the file is too). If the file
 * does not load, new bundles still go out, on the last good registry. */
struct reg_bundle;
int regwatch_set_bundles(struct regwatch *rw, struct reg_bundle *b, size_t n);
/* Replace the remote networks every registry carries from now on (taking
 * the caller's reference to rs; NULL for none) and publish them at once on
 * the current registry. 0 or -ENOMEM. */
struct reg_remotes;
int regwatch_set_remotes(struct regwatch *rw, struct reg_remotes *rs);
/* Reloads refused because the file did not parse (or could not be read). */
uint64_t regwatch_failures(const struct regwatch *rw);
/* Reload now (also used by SIGHUP). 0 changed or unchanged, -EINVAL bad file. */
int regwatch_reload(struct regwatch *rw);

#endif
