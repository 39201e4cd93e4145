/* SPDX-License-Identifier: Apache-2.0 */
/* The capture rules through libnftables in a throwaway netns (a child that
 * unshare()s one and waits): install, check, idempotent re-install, remove,
 * check fails, remove again is fine, a gone netns is -ENOENT, and the
 * caller's own namespace is untouched throughout. Needs root: exit 77. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "../../../cni/cninft.h"

#include "../check.h"

/* Number of "inet weft" tables in the current netns (-1 on error). */
static int weft_tables_here(void)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
	const char *out, *p;
	int n = 0;

	if (!nft)
		return -1;
	nft_ctx_buffer_output(nft);
	nft_ctx_buffer_error(nft);
	if (nft_run_cmd_from_buffer(nft, "list tables") != 0) {
		nft_ctx_free(nft);
		return -1;
	}
	out = nft_ctx_get_output_buffer(nft);
	for (p = out; p && (p = strstr(p, "table inet weft\n")); p++)
		n++;
	nft_ctx_free(nft);
	return n;
}

int main(void)
{
	char path[64], err[256];
	struct stat before, after;
	int go[2], ready[2];
	pid_t pid;
	char c;

	if (geteuid() != 0) {
		printf("skip: needs root for network namespaces\n");
		return 77;
	}
	if (pipe(go) < 0 || pipe(ready) < 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		close(go[1]);
		close(ready[0]);
		c = unshare(CLONE_NEWNET) == 0 ? 'y' : 'n';
		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		if (read(go[0], &c, 1) < 0)	/* until the parent is done */
			_exit(1);
		_exit(0);
	}
	close(go[0]);
	close(ready[1]);
	if (read(ready[0], &c, 1) != 1 || c != 'y') {
		printf("skip: unshare(CLONE_NEWNET) not permitted\n");
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return 77;
	}
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	stat("/proc/thread-self/ns/net", &before);

	CHECK_EQ_INT(cninft_check(path, err, sizeof(err)), -ENODATA);
	CHECK(strstr(err, "missing") != NULL);
	CHECK_EQ_INT(cninft_install(path, err, sizeof(err)), 0);
	CHECK_EQ_INT(cninft_check(path, err, sizeof(err)), 0);
	/* Nothing of it here, and we are back home. */
	CHECK_EQ_INT(weft_tables_here(), 0);
	stat("/proc/thread-self/ns/net", &after);
	CHECK(before.st_ino == after.st_ino);

	CHECK_EQ_INT(cninft_install(path, err, sizeof(err)), 0);	/* idempotent */
	CHECK_EQ_INT(cninft_check(path, err, sizeof(err)), 0);
	CHECK_EQ_INT(cninft_remove(path, err, sizeof(err)), 0);
	CHECK_EQ_INT(cninft_check(path, err, sizeof(err)), -ENODATA);
	CHECK_EQ_INT(cninft_remove(path, err, sizeof(err)), 0);	/* already gone: fine */

	/* The ruleset text is what the check looks for. */
	CHECK(strstr(cninft_ruleset(), "redirect to :15001") != NULL);
	CHECK(strstr(cninft_ruleset(), "redirect to :15006") != NULL);
	CHECK(strstr(cninft_ruleset(), "meta mark 0x539 return") != NULL);

	/* The pod is gone: ENOENT, which DEL tolerates. */
	if (write(go[1], "x", 1) != 1)
		CHECK(0);
	waitpid(pid, NULL, 0);
	CHECK_EQ_INT(cninft_install(path, err, sizeof(err)), -ENOENT);
	CHECK_EQ_INT(cninft_remove(path, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, path) != NULL);
	/* Not a namespace at all. */
	CHECK_EQ_INT(cninft_install("/dev/null", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "cannot enter") != NULL);
	stat("/proc/thread-self/ns/net", &after);
	CHECK(before.st_ino == after.st_ino);
	return check_done("test_cninft");
}
