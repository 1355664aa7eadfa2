/* Agent API (api.c) against a real registry, a real config file and a real
 * catalog.json in a temporary repository: boot tokens (issued, replaced,
 * compared), the plan (modes, "latest" by version order, types, profile
 * and catalogue errors as 409), inventory and status bodies (strict
 * parsing, state changes written with events, progress kept in memory and
 * evicted oldest first), and the routing (404, 405 with Allow). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/catalog.h"
#include "common/optoken.h"
#include "common/util.h"
#include "pxe/api.h"
#include "pxe/config.h"
#include "pxe/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const uint8_t mac1[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const char mac1s[] = "52:54:00:12:34:56";
static const uint8_t mac2[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x57 };

struct fixture {
	char dir[32];
	char db[64], repo[64], conf[64];
	int repo_fd;
	struct rb_config *cfg;
	struct registry *reg;
	struct api *api;
	char token[API_TOKEN_LEN + 1];
	char auth[64];
	char opauth[80]; /* an operator token's Authorization value */
};

static const char conf_text[] =
        "default_profile = \"deb\"\n"
        "profile \"deb\" { image = \"debian\" }\n"
        "profile \"pinned\" { image = \"debian\" version = \"9\" wipe = \"full\" "
        "grow_last_partition = true after = \"none\" disk = \"/dev/vdb\" }\n"
        "profile \"raw\" { image = \"site-raw\" }\n"
        "profile \"tar\" { image = \"site-tar\" version = \"1.0\" after = \"poweroff\" }\n"
        "profile \"both\" { image = \"mixed\" }\n"
        "profile \"nosuchimage\" { image = \"ghost\" }\n"
        "profile \"nosuchversion\" { image = \"debian\" version = \"11\" }\n";

static void add_image(struct img_catalog *c, const char *name, const char *version)
{
	struct img_cat_image e = { .disk_size = 1 << 20, .stored_bytes = 4096 };

	snprintf(e.name, sizeof(e.name), "%s", name);
	snprintf(e.version, sizeof(e.version), "%s", version);
	snprintf(e.manifest, sizeof(e.manifest), "images/%s/%s.manifest.json", name, version);
	memset(e.manifest_sha256, 'a', 64);
	assert_int_equal(img_catalog_add_image(c, &e), 0);
}

static void add_plain(struct img_catalog *c, const char *name, const char *version,
                      const char *kind)
{
	struct img_cat_plain e = { .size = 1 << 20 };

	snprintf(e.name, sizeof(e.name), "%s", name);
	snprintf(e.version, sizeof(e.version), "%s", version);
	snprintf(e.path, sizeof(e.path), "plain/%s-%s.%s", name, version, kind);
	snprintf(e.kind, sizeof(e.kind), "%s", kind);
	memset(e.sha256, 'b', 64);
	assert_int_equal(img_catalog_add_plain(c, &e), 0);
}

static void write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void write_catalog(struct fixture *f)
{
	struct img_catalog *c = NULL;
	char path[96], *json = NULL;
	size_t len = 0;

	assert_int_equal(img_catalog_new(&c), 0);
	/* Version order, not string order: 10 > 9 > 2. */
	add_image(c, "debian", "2");
	add_image(c, "debian", "10");
	add_image(c, "debian", "9");
	add_plain(c, "site-raw", "1", "raw.zst");
	add_plain(c, "site-tar", "1.0", "tar.gz");
	/* One name in both sections: the greater version wins. */
	add_image(c, "mixed", "1.2");
	add_plain(c, "mixed", "1.10", "raw");
	assert_int_equal(img_catalog_serialize(c, &json, &len), 0);
	snprintf(path, sizeof(path), "%s/catalog.json", f->repo);
	write_file(path, json, len);
	free(json);
	img_catalog_free(c);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/rbapiXXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/registry.db", f->dir);
	snprintf(f->repo, sizeof(f->repo), "%s/repo", f->dir);
	snprintf(f->conf, sizeof(f->conf), "%s/rackbootd.conf", f->dir);
	if (mkdir(f->repo, 0755) < 0)
		return -1;
	write_file(f->conf, conf_text, strlen(conf_text));
	write_catalog(f);
	if (rb_config_load(f->conf, NULL, stderr, &f->cfg) < 0)
		return -1;
	{
		char tokpath[64], tok[RB_OPTOKEN_LEN + 1], err[200];

		snprintf(tokpath, sizeof(tokpath), "%s/tokens", f->dir);
		free(f->cfg->api_tokens_file);
		f->cfg->api_tokens_file = strdup(tokpath);
		if (!f->cfg->api_tokens_file ||
		    rb_optoken_create(tokpath, "unit", tok, err, sizeof(err)) < 0)
			return -1;
		snprintf(f->opauth, sizeof(f->opauth), "Bearer %s", tok);
	}
	f->repo_fd = open(f->repo, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (f->repo_fd < 0 || registry_open(f->db, &f->reg) < 0)
		return -1;
	if (api_new(f->cfg, f->reg, f->repo_fd, API_PROGRESS_MAX, &f->api) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[64];

	api_free(f->api);
	registry_free(f->reg);
	rb_config_free(f->cfg);
	close(f->repo_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	free(f);
	return system(cmd);
}

/* One request; returns the status and the parsed body (caller decrefs). */
static unsigned call(struct fixture *f, const char *method, const char *path, const char *body,
                     const char *auth, json_t **ret_doc)
{
	struct api_request rq = {
		.method = method,
		.path = path,
		.body = body,
		.body_len = body ? strlen(body) : 0,
		.authorization = auth,
		.base = "http://10.77.0.1:8080",
	};
	struct api_reply rep;
	json_t *doc;

	assert_int_equal(api_handle(f->api, &rq, &rep), 0);
	assert_non_null(rep.body);
	assert_int_equal(rep.len, strlen(rep.body));
	doc = json_loads(rep.body, 0, NULL);
	free(rep.body);
	assert_non_null(doc);
	if (rep.status >= 400)
		assert_non_null(json_string_value(json_object_get(doc, "error")));
	if (ret_doc)
		*ret_doc = doc;
	else
		json_decref(doc);
	return rep.status;
}

static const char *sget(json_t *doc, const char *key)
{
	const char *s = json_string_value(json_object_get(doc, key));

	return s ? s : "(absent)";
}

/* A node that fetched its script: in the registry with a fresh token. */
static void boot(struct fixture *f, const uint8_t mac[6], const char *state, const char *profile)
{
	assert_int_equal(api_token_issue(f->reg, mac, f->token), 0);
	assert_int_equal(strlen(f->token), API_TOKEN_LEN);
	assert_int_equal(strspn(f->token, "0123456789abcdef"), API_TOKEN_LEN);
	snprintf(f->auth, sizeof(f->auth), "Bearer %s", f->token);
	if (state || profile)
		assert_int_equal(registry_node_set(f->reg, mac, state, profile), 0);
}

static void test_tokens(void **state)
{
	struct fixture *f = *state;
	char old[64], path[64], lower[64];

	snprintf(path, sizeof(path), "/api/v1/nodes/%s/plan", mac1s);
	/* Unknown node: 404 whatever the token. */
	assert_int_equal(call(f, "GET", path, NULL, "Bearer 00", NULL), 404);
	boot(f, mac1, NULL, NULL);
	assert_int_equal(call(f, "GET", path, NULL, f->auth, NULL), 200);
	/* Scheme case-insensitive, blanks around the token tolerated. */
	snprintf(lower, sizeof(lower), "bearer  %s ", f->token);
	assert_int_equal(call(f, "GET", path, NULL, lower, NULL), 200);
	assert_int_equal(call(f, "GET", path, NULL, NULL, NULL), 403);
	assert_int_equal(call(f, "GET", path, NULL, "", NULL), 403);
	assert_int_equal(call(f, "GET", path, NULL, f->token, NULL), 403); /* no scheme */
	assert_int_equal(call(f, "GET", path, NULL, "Bearer ", NULL), 403);
	snprintf(old, sizeof(old), "Basic %s", f->token);
	assert_int_equal(call(f, "GET", path, NULL, old, NULL), 403);
	/* One character off, and a prefix of the right token. */
	snprintf(old, sizeof(old), "%s", f->auth);
	old[strlen(old) - 1] = old[strlen(old) - 1] == '0' ? '1' : '0';
	assert_int_equal(call(f, "GET", path, NULL, old, NULL), 403);
	snprintf(old, sizeof(old), "%.*s", (int)strlen(f->auth) - 1, f->auth);
	assert_int_equal(call(f, "GET", path, NULL, old, NULL), 403);
	/* The next boot's token replaces the old one. */
	snprintf(old, sizeof(old), "%s", f->auth);
	boot(f, mac1, NULL, NULL);
	assert_string_not_equal(old, f->auth);
	assert_int_equal(call(f, "GET", path, NULL, old, NULL), 403);
	assert_int_equal(call(f, "GET", path, NULL, f->auth, NULL), 200);
	/* Another node's token is no good here. */
	snprintf(old, sizeof(old), "%s", f->auth);
	boot(f, mac2, NULL, NULL);
	assert_int_equal(call(f, "GET", path, NULL, f->auth, NULL), 403);
	assert_int_equal(call(f, "GET", path, NULL, old, NULL), 200);
	/* The same holds for the POST endpoints. */
	snprintf(path, sizeof(path), "/api/v1/nodes/%s/status", mac1s);
	assert_int_equal(call(f, "POST", path, "{\"state\":\"wiping\"}", f->auth, NULL), 403);
	snprintf(path, sizeof(path), "/api/v1/nodes/%s/inventory", mac1s);
	assert_int_equal(call(f, "POST", path, "{}", NULL, NULL), 403);
}

struct plan_case {
	const char *profile; /* registry profile, "" = default_profile */
	const char *name, *version, *type, *wipe, *after, *disk;
	bool grow;
};

static void test_plan_provision(void **state)
{
	static const struct plan_case cases[] = {
		{ "", "debian", "10", "rackboot", "metadata", "reboot", "", false },
		{ "pinned", "debian", "9", "rackboot", "full", "none", "/dev/vdb", true },
		{ "raw", "site-raw", "1", "plain", "metadata", "reboot", "", false },
		{ "tar", "site-tar", "1.0", "rootfs", "metadata", "poweroff", "", false },
		{ "both", "mixed", "1.10", "plain", "metadata", "reboot", "", false },
	};
	struct fixture *f = *state;
	char path[64];
	json_t *doc, *img;

	snprintf(path, sizeof(path), "/api/v1/nodes/%s/plan", mac1s);
	for (size_t i = 0; i < N(cases); i++) {
		const struct plan_case *c = &cases[i];

		boot(f, mac1, i % 2 ? "imaging" : "provisioning", c->profile);
		assert_int_equal(call(f, "GET", path, NULL, f->auth, &doc), 200);
		assert_string_equal(sget(doc, "mac"), mac1s);
		assert_string_equal(sget(doc, "mode"), "provision");
		assert_string_equal(sget(doc, "action"), "image");
		assert_string_equal(sget(doc, "state"), i % 2 ? "imaging" : "provisioning");
		assert_string_equal(sget(doc, "profile"), *c->profile ? c->profile : "deb");
		img = json_object_get(doc, "image");
		assert_string_equal(sget(img, "repo"), "http://10.77.0.1:8080/repo");
		assert_string_equal(sget(img, "name"), c->name);
		assert_string_equal(sget(img, "version"), c->version);
		assert_string_equal(sget(img, "type"), c->type);
		assert_string_equal(sget(doc, "wipe"), c->wipe);
		assert_string_equal(sget(doc, "after"), c->after);
		assert_string_equal(sget(doc, "disk"), c->disk);
		assert_int_equal(json_is_true(json_object_get(doc, "grow_last_partition")),
		                 c->grow);
		json_decref(doc);
	}
	/* HEAD is answered like GET. */
	assert_int_equal(call(f, "HEAD", path, NULL, f->auth, NULL), 200);
}

static void test_plan_discovery(void **state)
{
	static const char *const states[] = { "new", "discovered", "failed", "imaged", "ready" };
	struct fixture *f = *state;
	char path[64];
	json_t *doc;

	snprintf(path, sizeof(path), "/api/v1/nodes/%s/plan", mac1s);
	for (size_t i = 0; i < N(states); i++) {
		boot(f, mac1, states[i], NULL);
		assert_int_equal(call(f, "GET", path, NULL, f->auth, &doc), 200);
		assert_string_equal(sget(doc, "mode"), "discovery");
		assert_string_equal(sget(doc, "action"), "inventory");
		assert_string_equal(sget(doc, "after"), "poweroff");
		assert_string_equal(sget(doc, "wipe"), "none");
		assert_string_equal(sget(doc, "state"), states[i]);
		assert_null(json_object_get(doc, "image"));
		json_decref(doc);
	}
}

static void expect_409(struct fixture *f, const char *profile, const char *want)
{
	char path[64];
	json_t *doc;

	snprintf(path, sizeof(path), "/api/v1/nodes/%s/plan", mac1s);
	boot(f, mac1, "provisioning", profile);
	assert_int_equal(call(f, "GET", path, NULL, f->auth, &doc), 409);
	if (!strstr(sget(doc, "error"), want))
		fail_msg("profile %s: error \"%s\", want \"%s\"", profile, sget(doc, "error"),
		         want);
	json_decref(doc);
}

static void test_plan_conflicts(void **state)
{
	struct fixture *f = *state;
	char path[96];

	expect_409(f, "gpu", "node has no profile: profile \"gpu\" is not defined");
	expect_409(f, "nosuchimage", "no image \"ghost\" in the repository catalogue");
	expect_409(f, "nosuchversion", "no version \"11\" of image \"debian\"");
	/* Without a default_profile, a node with none set has no profile. */
	free(f->cfg->default_profile);
	f->cfg->default_profile = strdup("");
	assert_non_null(f->cfg->default_profile);
	expect_409(f, "", "node has no profile: none is set");
	/* A broken, then a missing catalogue. */
	snprintf(path, sizeof(path), "%s/catalog.json", f->repo);
	write_file(path, "{\"format\":", 10);
	expect_409(f, "pinned", "catalog.json is not valid");
	assert_int_equal(unlink(path), 0);
	expect_409(f, "pinned", "no catalogue");
}

static void test_repo_url_from_config(void **state)
{
	struct fixture *f = *state;
	char path[64];
	json_t *doc;

	free(f->cfg->repo_url);
	f->cfg->repo_url = strdup("https://cdn.example.org/rack1");
	assert_non_null(f->cfg->repo_url);
	snprintf(path, sizeof(path), "/api/v1/nodes/%s/plan", mac1s);
	boot(f, mac1, "provisioning", NULL);
	assert_int_equal(call(f, "GET", path, NULL, f->auth, &doc), 200);
	assert_string_equal(sget(json_object_get(doc, "image"), "repo"),
	                    "https://cdn.example.org/rack1");
	json_decref(doc);
}

/* Node document: state, number of events, the last event and detail. */
static json_t *node(struct fixture *f, const uint8_t mac[6], size_t *ret_events,
                    const char **ret_last, const char **ret_detail)
{
	char path[64], m[18];
	json_t *doc, *evs, *last;

	snprintf(path, sizeof(path), "/api/v1/nodes/%s", rb_mac_format(mac, m));
	registry_flush(f->reg);
	assert_int_equal(call(f, "GET", path, NULL, f->opauth, &doc), 200);
	evs = json_object_get(doc, "events");
	*ret_events = json_array_size(evs);
	last = json_array_get(evs, *ret_events - 1);
	*ret_last = sget(last, "event");
	*ret_detail = sget(last, "detail");
	return doc;
}

static void test_status(void **state)
{
	static const struct {
		const char *body, *want;
	} bad[] = {
		{ "", "body is required" },
		{ "not json", "not JSON" },
		{ "[]", "must be a JSON object" },
		{ "{}", "\"state\" is required" },
		{ "{\"state\":7}", "\"state\" is required" },
		{ "{\"state\":\"provisioning\"}", "must be one of" },
		{ "{\"state\":\"ready\",\"reboot_required\":1}", "reboot_required" },
		{ "{\"state\":\"ready\",\"installed\":{\"packages\":[{\"name\":\"a\"}]}}",
		  "packages[0]" },
		{ "{\"state\":\"imaging\\u0000x\"}", "not JSON" },
		{ "{\"state\":\"failed\"}", "needs a \"message\"" },
		{ "{\"state\":\"failed\",\"message\":\"\"}", "needs a \"message\"" },
		{ "{\"state\":\"imaging\",\"bytes_done\":-1}",
		  "\"bytes_done\" must be a non-negative" },
		{ "{\"state\":\"imaging\",\"bytes_total\":1.5}", "\"bytes_total\" must be" },
		{ "{\"state\":\"imaging\",\"rate\":\"fast\"}", "\"rate\" must be" },
		{ "{\"state\":\"imaging\",\"step\":3}", "\"step\" must be a string" },
		{ "{\"state\":\"imaging\",\"state\":\"imaged\"}", "duplicate" },
		{ "{\"state\":\"imaging\",\"bytes_done\":99999999999999999999}", "not JSON" },
	};
	struct fixture *f = *state;
	char path[64], body[1400];
	const char *last, *detail;
	size_t n0, n;
	json_t *doc, *prog;

	snprintf(path, sizeof(path), "/api/v1/nodes/%s/status", mac1s);
	boot(f, mac1, "provisioning", NULL);
	for (size_t i = 0; i < N(bad); i++) {
		json_t *d;
		unsigned st = call(f, "POST", path, bad[i].body, f->auth, &d);

		if (st != 400 || !strstr(sget(d, "error"), bad[i].want))
			fail_msg("body %zu: %u \"%s\", want 400 \"%s\"", i, st, sget(d, "error"),
			         bad[i].want);
		json_decref(d);
	}
	/* Over-long strings are refused, at the cap they pass. */
	snprintf(body, sizeof(body), "{\"state\":\"wiping\",\"step\":\"%0257d\"}", 0);
	assert_int_equal(call(f, "POST", path, body, f->auth, NULL), 400);
	snprintf(body, sizeof(body), "{\"state\":\"wiping\",\"message\":\"%01025d\"}", 0);
	assert_int_equal(call(f, "POST", path, body, f->auth, NULL), 400);
	doc = node(f, mac1, &n0, &last, &detail);
	assert_string_equal(sget(doc, "state"), "provisioning"); /* nothing applied */
	assert_true(json_is_null(json_object_get(doc, "progress")));
	json_decref(doc);

	/* A state change: registry state and one event with the step. */
	snprintf(body, sizeof(body), "{\"state\":\"wiping\",\"step\":\"%0256d\",\"x-new\":1}", 0);
	assert_int_equal(call(f, "POST", path, body, f->auth, NULL), 200);
	doc = node(f, mac1, &n, &last, &detail);
	assert_string_equal(sget(doc, "state"), "wiping");
	assert_int_equal(n, n0 + 1);
	assert_string_equal(last, "agent.wiping");
	json_decref(doc);
	assert_int_equal(call(f, "POST", path,
	                      "{\"state\":\"imaging\",\"step\":\"write\",\"bytes_done\":0,"
	                      "\"bytes_total\":1000,\"rate\":0}",
	                      f->auth, NULL),
	                 200);
	/* Progress only: in memory, no event, no state write. */
	for (int i = 1; i <= 5; i++) {
		snprintf(body, sizeof(body),
		         "{\"state\":\"imaging\",\"step\":\"write\",\"bytes_done\":%d,"
		         "\"bytes_total\":1000,\"rate\":%d,\"message\":null}",
		         i * 200, i * 10);
		assert_int_equal(call(f, "POST", path, body, f->auth, NULL), 200);
	}
	doc = node(f, mac1, &n, &last, &detail);
	assert_string_equal(sget(doc, "state"), "imaging");
	assert_int_equal(n, n0 + 2);
	assert_string_equal(last, "agent.imaging");
	assert_string_equal(detail, "write");
	prog = json_object_get(doc, "progress");
	assert_string_equal(sget(prog, "state"), "imaging");
	assert_string_equal(sget(prog, "step"), "write");
	assert_int_equal(json_integer_value(json_object_get(prog, "bytes_done")), 1000);
	assert_int_equal(json_integer_value(json_object_get(prog, "bytes_total")), 1000);
	assert_int_equal(json_integer_value(json_object_get(prog, "rate")), 50);
	assert_true(json_integer_value(json_object_get(prog, "updated_ms")) > 1600000000000LL);
	json_decref(doc);
	/* failed: the message is the event's detail. */
	assert_int_equal(call(f, "POST", path,
	                      "{\"state\":\"failed\",\"step\":\"write\",\"message\":\"chunk 7: "
	                      "sha256 mismatch\"}",
	                      f->auth, NULL),
	                 200);
	doc = node(f, mac1, &n, &last, &detail);
	assert_string_equal(sget(doc, "state"), "failed");
	assert_string_equal(last, "agent.failed");
	assert_string_equal(detail, "chunk 7: sha256 mismatch");
	assert_string_equal(sget(json_object_get(doc, "progress"), "message"),
	                    "chunk 7: sha256 mismatch");
	json_decref(doc);
}

static void test_inventory(void **state)
{
	struct fixture *f = *state;
	char path[64];
	const char *last, *detail;
	size_t n;
	json_t *doc, *inv;

	snprintf(path, sizeof(path), "/api/v1/nodes/%s/inventory", mac1s);
	boot(f, mac1, NULL, NULL);
	assert_int_equal(call(f, "POST", path, "[1,2]", f->auth, NULL), 400);
	assert_int_equal(call(f, "POST", path, "{\"a\":1,\"a\":2}", f->auth, NULL), 400);
	assert_int_equal(call(f, "POST", path, NULL, f->auth, NULL), 400);
	/* new -> discovered, inventory stored and shown. */
	assert_int_equal(
	        call(f, "POST", path, "{\"cpus\":8,\"disks\":[{\"name\":\"vda\"}]}", f->auth, &doc),
	        200);
	assert_string_equal(sget(doc, "state"), "discovered");
	json_decref(doc);
	doc = node(f, mac1, &n, &last, &detail);
	assert_string_equal(sget(doc, "state"), "discovered");
	assert_string_equal(last, "agent.discovered");
	inv = json_object_get(doc, "inventory");
	assert_int_equal(json_integer_value(json_object_get(inv, "cpus")), 8);
	assert_string_equal(sget(json_array_get(json_object_get(inv, "disks"), 0), "name"), "vda");
	json_decref(doc);
	/* A provisioning node keeps its state; the inventory is replaced. */
	assert_int_equal(registry_node_set(f->reg, mac1, "provisioning", NULL), 0);
	assert_int_equal(call(f, "POST", path, "{\"cpus\":16}", f->auth, NULL), 200);
	doc = node(f, mac1, &n, &last, &detail);
	assert_string_equal(sget(doc, "state"), "provisioning");
	assert_string_equal(last, "agent.inventory");
	inv = json_object_get(doc, "inventory");
	assert_int_equal(json_integer_value(json_object_get(inv, "cpus")), 16);
	assert_null(json_object_get(inv, "disks"));
	json_decref(doc);
}

static void test_progress_eviction(void **state)
{
	struct fixture *f = *state;
	uint8_t macs[3][6];
	char auths[3][64];

	/* A table for two nodes: the third evicts the least recently updated. */
	api_free(f->api);
	assert_int_equal(api_new(f->cfg, f->reg, f->repo_fd, 2, &f->api), 0);
	for (int i = 0; i < 3; i++) {
		memcpy(macs[i], mac1, 6);
		macs[i][5] = (uint8_t)(0x80 + i);
		boot(f, macs[i], "provisioning", NULL);
		snprintf(auths[i], sizeof(auths[i]), "%s", f->auth);
	}
	for (int step = 0; step < 4; step++) {
		/* Updates 0, 1, 0, then 2: node 1 is the oldest when 2 arrives. */
		int i = step == 3 ? 2 : step % 2;
		char path[64], m[18];

		snprintf(path, sizeof(path), "/api/v1/nodes/%s/status", rb_mac_format(macs[i], m));
		assert_int_equal(call(f, "POST", path, "{\"state\":\"wiping\"}", auths[i], NULL),
		                 200);
	}
	for (int i = 0; i < 3; i++) {
		const char *last, *detail;
		size_t n;
		json_t *doc = node(f, macs[i], &n, &last, &detail);
		json_t *p = json_object_get(doc, "progress");

		if (i == 1)
			assert_true(json_is_null(p));
		else
			assert_string_equal(sget(p, "state"), "wiping");
		/* The state change itself is on disk either way. */
		assert_string_equal(sget(doc, "state"), "wiping");
		json_decref(doc);
	}
}

static void test_routing(void **state)
{
	static const struct {
		const char *method, *path;
		unsigned status;
		const char *allow;
	} cases[] = {
		{ "GET", "/api/v1/nope", 404, NULL },
		{ "GET", "/api/v1/nodesx", 404, NULL },
		{ "GET", "/api/v1/nodes/52:54:00:12:34:56/nope", 404, NULL },
		{ "GET", "/api/v1/nodes/52:54:00:12:34:56/plan/x", 404, NULL },
		{ "PUT", "/api/v1/nodes", 405, "GET, HEAD, POST" },
		{ "POST", "/api/v1/nodes/52:54:00:12:34:56", 405, "GET, HEAD, PATCH" },
		{ "POST", "/api/v1/nodes/52:54:00:12:34:56/plan", 405, "GET, HEAD" },
		{ "GET", "/api/v1/nodes/52:54:00:12:34:56/status", 405, "POST" },
		{ "PUT", "/api/v1/nodes/52:54:00:12:34:56/inventory", 405, "POST" },
		{ "GET", "/api/v1/nodes/not-a-mac/plan", 400, NULL },
		{ "POST", "/api/v1/nodes/0123456789012345678901234567/status", 400, NULL },
		{ "GET", "/api/v1/nodes/52:54:00:12:34:56", 404, NULL },
		{ "GET", "/api/v1/nodes", 200, NULL },
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < N(cases); i++) {
		struct api_request rq = { .method = cases[i].method,
			                  .path = cases[i].path,
			                  .authorization = f->opauth };
		struct api_reply rep;

		assert_int_equal(api_handle(f->api, &rq, &rep), 0);
		if (rep.status != cases[i].status)
			fail_msg("%s %s: %u, want %u", cases[i].method, cases[i].path, rep.status,
			         cases[i].status);
		if (cases[i].allow)
			assert_string_equal(rep.allow, cases[i].allow);
		free(rep.body);
	}
	/* The operator endpoints need an operator token, before anything else:
	 * none, a wrong one, and a node's boot token are all 401. */
	boot(f, mac1, "new", NULL);
	{
		const char *auths[] = { NULL, "Bearer rbo_0000", f->auth, "Basic dXNlcjpwdw==" };
		const char *paths[] = { "/api/v1/nodes",
			                "/api/v1/nodes/52:54:00:12:34:56",
			                "/api/v1/nodes/zz",
			                "/api/v1/images",
			                "/api/v1/profiles",
			                "/api/v1/package-sets",
			                "/api/v1/nodes/52:54:00:12:34:56/"
			                "actions/retire" };

		for (size_t a = 0; a < N(auths); a++)
			for (size_t p = 0; p < N(paths); p++) {
				struct api_request rq = { .method = "GET",
					                  .path = paths[p],
					                  .authorization = auths[a] };
				struct api_reply rep;

				assert_int_equal(api_handle(f->api, &rq, &rep), 0);
				if (rep.status != 401)
					fail_msg("%s with auth %zu: %u, want 401", paths[p], a,
					         rep.status);
				free(rep.body);
			}
	}
	assert_true(api_state_provisions("provisioning"));
	assert_true(api_state_provisions("imaging"));
	assert_false(api_state_provisions("imaged"));
	assert_false(api_state_provisions("new"));
	api_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_provision, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_discovery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plan_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repo_url_from_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inventory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_progress_eviction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_routing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
