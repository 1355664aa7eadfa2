/* Fuzz target: the operator API's request parsing (api_ops.c, nodefilter.c,
 * lifecycle.c) with a real registry and a real tokens file in a temporary
 * directory. The first byte picks what the rest is: 0 a register body
 * (POST /api/v1/nodes), 1 a PATCH body, 2 a reimage body, 3 a list query
 * string, 4 an Authorization header on the node list. Oracle: every input
 * gets an answer (2xx or a JSON error with the same status), never a
 * crash; only a 2xx changed the node (its event count is compared). */
#include "common/optoken.h"
#include "pxe/api.h"
#include "pxe/config.h"
#include "pxe/registry.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static char dir[] = "/tmp/rb-fuzz-ops.XXXXXX";
static struct rb_config *cfg;
static struct registry *reg;
static struct api *api;
static char auth[96];

static void teardown(void)
{
	char cmd[64];

	api_free(api);
	registry_free(reg);
	rb_config_free(cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static int setup(void)
{
	char path[96], conf[96], token[RB_OPTOKEN_LEN + 1], err[300];
	FILE *f;

	if (!mkdtemp(dir))
		return -1;
	snprintf(conf, sizeof(conf), "%s/rackbootd.conf", dir);
	f = fopen(conf, "w");
	if (!f)
		return -1;
	fprintf(f,
	        "state_dir = \"%s\"\n"
	        "package_set \"gpu\" { packages = {\"cuda\"} }\n"
	        "profile \"p\" { image = \"debian\" package_sets = {\"gpu\"} }\n",
	        dir);
	fclose(f);
	if (rb_config_load(conf, NULL, stderr, &cfg) < 0)
		return -1;
	if (rb_optoken_create(cfg->api_tokens_file, "fuzz", token, err, sizeof(err)) < 0)
		return -1;
	snprintf(auth, sizeof(auth), "Bearer %s", token);
	snprintf(path, sizeof(path), "%s/registry.db", dir);
	if (registry_open(path, &reg) < 0 || api_new(cfg, reg, -1, 16, &api) < 0)
		return -1;
	if (registry_node_set(reg, mac, "ready", "p") < 0)
		return -1;
	atexit(teardown);
	return 0;
}

static size_t n_events(void)
{
	json_t *doc = NULL;
	size_t n;

	if (registry_node_doc(reg, mac, 100000, &doc) < 0)
		abort();
	n = json_array_size(json_object_get(doc, "events"));
	json_decref(doc);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct api_request rq = { .base = "http://127.0.0.1:8080", .authorization = auth };
	struct api_reply rep;
	char *text = NULL;
	size_t before;
	json_t *doc;

	if (!ready)
		ready = setup() == 0 ? 1 : -1;
	if (ready < 0)
		abort();
	if (size < 1 || size > API_BODY_MAX || data[0] > 4)
		return 0;
	rq.body = (const char *)data + 1;
	rq.body_len = size - 1;
	switch (data[0]) {
	case 0:
		rq.method = "POST";
		rq.path = "/api/v1/nodes";
		break;
	case 1:
		rq.method = "PATCH";
		rq.path = "/api/v1/nodes/52:54:00:12:34:56";
		break;
	case 2:
		rq.method = "POST";
		rq.path = "/api/v1/nodes/52:54:00:12:34:56/actions/reimage";
		break;
	default:
		text = strndup((const char *)data + 1, size - 1);
		if (!text)
			return 0;
		rq.method = "GET";
		rq.path = "/api/v1/nodes";
		rq.body = NULL;
		rq.body_len = 0;
		if (data[0] == 3)
			rq.query = text;
		else
			rq.authorization = text;
	}
	before = n_events();
	if (api_handle(api, &rq, &rep) == 0) {
		if (rep.status < 200 || rep.status > 599 || !rep.body ||
		    rep.len != strlen(rep.body))
			abort();
		doc = json_loads(rep.body, 0, NULL);
		if (!doc)
			abort();
		if (rep.status >= 400 &&
		    json_integer_value(json_object_get(doc, "status")) != (json_int_t)rep.status)
			abort();
		/* A refusal writes nothing. */
		if (rep.status >= 400 && n_events() != before)
			abort();
		json_decref(doc);
		free(rep.body);
	}
	/* Keep the node reimageable: a hold or retire is not in the inputs,
	 * but a reimage leaves it provisioning, which is fine. */
	free(text);
	return 0;
}
