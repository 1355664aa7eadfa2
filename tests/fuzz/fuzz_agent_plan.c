/* Fuzz target: the agent's two parsers of untrusted input, the kernel
 * command line and the plan (first byte 'c' picks the command line, any
 * other the plan). Oracles: every refusal says why; what is accepted has
 * the shape the rest of the agent relies on (http(s) URLs without '?' or
 * '#', lowercase hex tokens, normalised MACs, a disk below /dev/, path-safe
 * image names). */
#include "agent/plan.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_url(const char *u)
{
	if (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0)
		abort();
	if (strpbrk(u, "?# \"\\") || (u[0] && u[strlen(u) - 1] == '/'))
		abort();
}

static void check_mac(const char *m)
{
	if (strlen(m) != 17)
		abort();
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? m[i] != ':' : !strchr("0123456789abcdef", m[i]))
			abort();
}

static void fuzz_cmdline(const char *s, size_t n)
{
	struct agent_cmdline c;
	char err[256] = "";

	if (agent_cmdline_parse(s, n, &c, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		return;
	}
	if (c.server[0])
		check_url(c.server);
	if (c.mac[0])
		check_mac(c.mac);
	if (c.token[0] && agent_token_check(c.token, NULL, 0) < 0)
		abort();
	if (agent_cmdline_check(&c, err, sizeof(err)) < 0 && !err[0])
		abort();
}

static void fuzz_plan(const char *s, size_t n)
{
	struct agent_plan p;
	char err[256] = "";
	int r = agent_plan_parse(s, n, "52:54:00:12:34:56", &p, err, sizeof(err));

	if (r < 0) {
		if ((r == -EINVAL || r == -EFBIG) && !err[0])
			abort();
		return;
	}
	check_mac(p.mac);
	if (p.action == AGENT_ACTION_IMAGE) {
		if (!p.has_image || p.mode != AGENT_MODE_PROVISION)
			abort();
		check_url(p.image.repo);
		if (!img_name_is_valid(p.image.name) || !img_name_is_valid(p.image.version))
			abort();
		if (p.disk[0] && (strncmp(p.disk, "/dev/", 5) != 0 || strstr(p.disk, "/../") ||
		                  strstr(p.disk, "/./") || strstr(p.disk, "//")))
			abort();
	} else if (p.has_image) {
		abort();
	}
	/* stage 2: names and versions path-safe, a lowercase hex node token */
	if (p.has_stage2 && agent_token_check(p.node_token, NULL, 0) < 0)
		abort();
	for (size_t i = 0; i < p.n_packages; i++)
		if (!img_name_is_valid(p.packages[i].name) || strchr(p.packages[i].version, '/'))
			abort();
	agent_plan_fini(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > AGENT_CMDLINE_MAX + 2)
		return 0;
	if (data[0] == 'c')
		fuzz_cmdline((const char *)data + 1, size - 1);
	else
		fuzz_plan((const char *)data + 1, size - 1);
	return 0;
}
