/* Fuzz target: the agent API's request parsing (api.c) with a real
 * registry in a temporary directory. The first byte picks what the rest
 * is: 0 a status body, 1 an inventory body (both with the node's valid
 * token), 2 an Authorization header for a plan request. Every input gets
 * an answer (2xx or a JSON error); never a crash. */
#include "pxe/api.h"
#include "pxe/config.h"
#include "pxe/registry.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static char dir[] = "/tmp/rb-fuzz-api.XXXXXX";
static struct rb_config *cfg;
static struct registry *reg;
static struct api *api;
static char auth[64];

static void teardown(void)
{
	char path[96];

	api_free(api);
	registry_free(reg);
	rb_config_free(cfg);
	snprintf(path, sizeof(path), "%s/registry.db", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/registry.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/registry.db-shm", dir);
	unlink(path);
	rmdir(dir);
}

static int setup(void)
{
	char path[96], token[API_TOKEN_LEN + 1];

	if (!mkdtemp(dir) || rb_config_load(NULL, NULL, stderr, &cfg) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/registry.db", dir);
	if (registry_open(path, &reg) < 0 || api_new(cfg, reg, -1, 16, &api) < 0)
		return -1;
	if (api_token_issue(reg, mac, token) < 0)
		return -1;
	snprintf(auth, sizeof(auth), "Bearer %s", token);
	atexit(teardown);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const paths[] = { "/api/v1/nodes/52:54:00:12:34:56/status",
		                             "/api/v1/nodes/52:54:00:12:34:56/inventory",
		                             "/api/v1/nodes/52:54:00:12:34:56/plan" };
	static int ready;
	struct api_request rq = { .base = "http://127.0.0.1:8080" };
	struct api_reply rep;
	char *hdr = NULL;

	if (!ready)
		ready = setup() == 0 ? 1 : -1;
	if (ready < 0)
		abort();
	if (size < 1 || size > API_BODY_MAX || data[0] > 2)
		return 0;
	rq.path = paths[data[0]];
	if (data[0] < 2) {
		rq.method = "POST";
		rq.body = (const char *)data + 1;
		rq.body_len = size - 1;
		rq.authorization = auth;
	} else {
		hdr = strndup((const char *)data + 1, size - 1);
		if (!hdr)
			return 0;
		rq.method = "GET";
		rq.authorization = hdr;
	}
	if (api_handle(api, &rq, &rep) == 0) {
		if (rep.status < 200 || rep.status > 599 || !rep.body ||
		    rep.len != strlen(rep.body))
			abort();
		free(rep.body);
	}
	free(hdr);
	return 0;
}
