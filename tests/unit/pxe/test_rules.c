/* Unit tests for pxe/rules.c (profile rules) and how the plan uses them:
 * the agent's real inventory of the dgx and commodity fixtures
 * (tests/data/inventory/<x>/inventory.json, made by make_fixtures.py
 * --agent), one condition at a time around its threshold, first match in
 * file order, hostile documents (wrong types, lists over RULES_LIST_MAX, not
 * an object) that must simply not match, globs, and through api_handle():
 * the registry's profile wins over a rule, a rule over default_profile,
 * with "profile_source" saying which. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/catalog.h"
#include "common/util.h"
#include "pxe/api.h"
#include "pxe/config.h"
#include "pxe/registry.h"
#include "pxe/rules.h"

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

static json_t *fixture_doc(const char *name)
{
	char path[512];
	json_error_t err;
	json_t *doc;

	snprintf(path, sizeof(path), "%s/inventory/%s/inventory.json", RB_DATADIR, name);
	doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	if (!doc)
		fail_msg("%s: %s (regenerate with make_fixtures.py --agent)", path, err.text);
	assert_true(json_is_object(doc));
	return doc;
}

static struct rb_rule rule(const char *name)
{
	struct rb_rule r;

	memset(&r, 0, sizeof(r));
	snprintf(r.name, sizeof(r.name), "%s", name);
	snprintf(r.profile, sizeof(r.profile), "p-%s", name);
	return r;
}

/* One condition at a time: just at the fixture's value and just past it. */
static void test_conditions(void **state)
{
	json_t *dgx = fixture_doc("dgx"), *com = fixture_doc("commodity");
	static const struct {
		const char *what;
		struct rb_rule r;
		bool dgx, commodity;
	} cases[] = {
		{ "nvidia, 1 gpu", { .gpu_vendor = "0x10de", .min_gpus = 1 }, true, false },
		{ "nvidia upper case", { .gpu_vendor = "0X10DE", .min_gpus = 8 }, true, false },
		{ "nvidia, 9 gpus", { .gpu_vendor = "0x10de", .min_gpus = 9 }, false, false },
		/* Any vendor reads gpus[]: not the BMC VGA nor an Intel iGPU. */
		{ "any vendor, 8 gpus", { .min_gpus = 8 }, true, false },
		{ "any vendor, 1 gpu", { .min_gpus = 1 }, true, false },
		/* A named vendor counts its display controllers in pci[]. */
		{ "aspeed bmc vga", { .gpu_vendor = "0x1a03", .min_gpus = 1 }, true, false },
		{ "intel igpu", { .gpu_vendor = "0x8086", .min_gpus = 1 }, false, true },
		/* MemTotal: 2015.5 GiB and 15.5 GiB. */
		{ "15 GiB", { .min_memory_gib = 15 }, true, true },
		{ "16 GiB", { .min_memory_gib = 16 }, true, false },
		{ "2015 GiB", { .min_memory_gib = 2015 }, true, false },
		{ "2016 GiB", { .min_memory_gib = 2016 }, false, false },
		{ "cpu xeon, any case", { .cpu_model = "xeon(r) platinum" }, true, false },
		{ "cpu core i5", { .cpu_model = "Core(TM) i5" }, false, true },
		{ "cpu epyc", { .cpu_model = "EPYC" }, false, false },
		{ "1 disk", { .min_disks = 1 }, true, true },
		{ "3 disks", { .min_disks = 3 }, true, false },
		{ "4 disks", { .min_disks = 4 }, false, false },
		/* The commodity NIC is down: speed null never matches. */
		{ "1 Mb/s nic", { .min_nic_speed_mbps = 1 }, true, false },
		{ "400 Gb/s nic", { .min_nic_speed_mbps = 400000 }, true, false },
		{ "400.001 Gb/s nic", { .min_nic_speed_mbps = 400001 }, false, false },
		{ "no condition", { .min_gpus = 0 }, true, true },
		{ "gpus and memory", { .min_gpus = 8, .min_memory_gib = 1024 }, true, false },
		{ "gpus but an i5", { .min_gpus = 8, .cpu_model = "i5" }, false, false },
	};

	for (size_t i = 0; i < N(cases); i++) {
		const struct rb_rule *r = &cases[i].r;

		if (rules_rule_matches(r, dgx, mac1s, "") != cases[i].dgx)
			fail_msg("%s: dgx should %smatch", cases[i].what,
			         cases[i].dgx ? "" : "not ");
		if (rules_rule_matches(r, com, mac1s, "") != cases[i].commodity)
			fail_msg("%s: commodity should %smatch", cases[i].what,
			         cases[i].commodity ? "" : "not ");
	}
	json_decref(dgx);
	json_decref(com);
}

/* File order decides, and a rule set that the GPU node and the box match
 * differently gives each its own profile. */
static void test_first_match(void **state)
{
	json_t *dgx = fixture_doc("dgx"), *com = fixture_doc("commodity");
	struct rb_rule rs[3] = { rule("gpu"), rule("bigmem"), rule("rest") };

	snprintf(rs[0].gpu_vendor, sizeof(rs[0].gpu_vendor), "0x10de");
	rs[0].min_gpus = 1;
	rs[1].min_memory_gib = 1024;
	assert_ptr_equal(rules_match(rs, 3, dgx, mac1, ""), &rs[0]);
	assert_ptr_equal(rules_match(rs, 3, com, mac1, ""), &rs[2]);
	/* bigmem first: the dgx matches it before gpu. */
	assert_ptr_equal(rules_match(rs + 1, 2, dgx, mac1, ""), &rs[1]);
	/* Without the catch-all nothing matches the box. */
	assert_null(rules_match(rs, 2, com, mac1, ""));
	assert_null(rules_match(rs, 0, dgx, mac1, ""));
	/* No inventory: only a rule without inventory conditions matches. */
	assert_ptr_equal(rules_match(rs, 3, NULL, mac1, ""), &rs[2]);
	assert_null(rules_match(rs, 2, NULL, mac1, ""));
	json_decref(dgx);
	json_decref(com);
}

static void test_mac_hostname(void **state)
{
	json_t *dgx = fixture_doc("dgx");
	struct rb_rule r = rule("m");
	static const uint8_t other[6] = { 0x00, 0x25, 0x90, 0xab, 0xcd, 0xef };

	snprintf(r.mac, sizeof(r.mac), "52:54:00:*");
	assert_ptr_equal(rules_match(&r, 1, dgx, mac1, NULL), &r);
	assert_ptr_equal(rules_match(&r, 1, NULL, mac1, NULL), &r);
	assert_null(rules_match(&r, 1, dgx, other, NULL));
	snprintf(r.mac, sizeof(r.mac), "00:25:90:AB:CD:E?");
	assert_ptr_equal(rules_match(&r, 1, NULL, other, NULL), &r);

	r = rule("h");
	snprintf(r.hostname, sizeof(r.hostname), "gpu-??.example.org");
	assert_true(rules_rule_matches(&r, NULL, mac1s, "gpu-07.example.org"));
	assert_true(rules_rule_matches(&r, NULL, mac1s, "GPU-07.Example.ORG"));
	assert_false(rules_rule_matches(&r, NULL, mac1s, "gpu-107.example.org"));
	assert_false(rules_rule_matches(&r, NULL, mac1s, ""));
	assert_false(rules_rule_matches(&r, NULL, mac1s, NULL));
	/* Both a glob and an inventory condition must hold. */
	r.min_gpus = 1;
	assert_true(rules_rule_matches(&r, dgx, mac1s, "gpu-07.example.org"));
	assert_false(rules_rule_matches(&r, NULL, mac1s, "gpu-07.example.org"));
	assert_false(rules_rule_matches(&r, dgx, mac1s, "cpu-07.example.org"));
	json_decref(dgx);
}

static void test_glob(void **state)
{
	static const struct {
		const char *pat, *s;
		bool match;
	} v[] = {
		{ "", "", true },
		{ "", "a", false },
		{ "*", "", true },
		{ "*", "anything", true },
		{ "a*", "a", true },
		{ "a*b", "axxb", true },
		{ "a*b", "axxbc", false },
		{ "a*b*c", "abxbxc", true },
		{ "*.example.org", "n1.example.org", true },
		{ "*.example.org", "n1.example.org.evil", false },
		{ "??", "ab", true },
		{ "??", "abc", false },
		{ "52:54:00:*", "52:54:00:12:34:56", true },
		{ "52:54:00:*", "52:54:01:12:34:56", false },
		{ "*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  false },
		{ "***", "x", true },
		{ "a?c", "ABC", true },
	};

	for (size_t i = 0; i < N(v); i++)
		if (rules_glob_match(v[i].pat, v[i].s) != v[i].match)
			fail_msg("glob \"%s\" on \"%s\" should be %d", v[i].pat, v[i].s,
			         v[i].match);
}

/* Documents an attacker can post: wrong types everywhere, huge lists, not
 * an object at all. Every inventory condition fails; nothing crashes. */
static void test_hostile(void **state)
{
	static const char *const docs[] = {
		"[]",
		"\"dgx\"",
		"null",
		"42",
		"{}",
		"{\"memory\": {\"total_bytes\": \"4096 GiB\"}, \"cpu\": {\"model\": 5},"
		" \"gpus\": \"8\", \"pci\": {\"vendor\": \"0x10de\"}, \"disks\": 9,"
		" \"nics\": [1, \"x\", null, {\"speed_mbps\": \"400000\"},"
		" {\"speed_mbps\": 4e5}, {\"speed_mbps\": true}]}",
		"{\"memory\": {\"total_bytes\": -1}, \"cpu\": null, \"gpus\": [1, \"x\", null, []],"
		" \"pci\": [{\"vendor\": 4318, \"class\": \"0x030200\"},"
		" {\"vendor\": \"0x10de\", \"class\": 197120}, {\"vendor\": \"0x10de\"}, 7],"
		" \"disks\": [1, 2, 3, \"sda\"], \"nics\": {}}",
		"{\"memory\": [], \"cpu\": [], \"gpus\": {}, \"pci\": null, \"disks\": {}, "
		"\"nics\": null}",
		"{\"memory\": {\"total_bytes\": 1.0e300}, \"cpu\": {\"model\": \"\"}}",
	};
	struct rb_rule rs[6] = { rule("gpu"), rule("nv"),    rule("mem"),
		                 rule("cpu"), rule("disks"), rule("nic") };

	rs[0].min_gpus = 1;
	snprintf(rs[1].gpu_vendor, sizeof(rs[1].gpu_vendor), "0x10de");
	rs[1].min_gpus = 1;
	rs[2].min_memory_gib = 1;
	snprintf(rs[3].cpu_model, sizeof(rs[3].cpu_model), "x");
	rs[4].min_disks = 1;
	rs[5].min_nic_speed_mbps = 1;
	for (size_t i = 0; i < N(docs); i++) {
		json_t *doc = json_loads(docs[i], JSON_DECODE_ANY, NULL);

		assert_non_null(doc);
		for (size_t j = 0; j < N(rs); j++)
			if (rules_rule_matches(&rs[j], doc, mac1s, "h"))
				fail_msg("doc %zu matched rule %s", i, rs[j].name);
		json_decref(doc);
	}
}

/* Lists longer than RULES_LIST_MAX are not looked at, even when the entries
 * that would match come first. */
static void test_huge_lists(void **state)
{
	json_t *doc = json_object(), *gpus = json_array(), *pci = json_array(),
	       *disks = json_array(), *nics = json_array();
	struct rb_rule rs[4] = { rule("gpu"), rule("nv"), rule("disks"), rule("nic") };

	rs[0].min_gpus = 1;
	snprintf(rs[1].gpu_vendor, sizeof(rs[1].gpu_vendor), "0x10de");
	rs[1].min_gpus = 1;
	rs[2].min_disks = 1;
	rs[3].min_nic_speed_mbps = 1;
	for (size_t i = 0; i <= RULES_LIST_MAX; i++) {
		json_array_append_new(
		        gpus, json_pack("{s:s, s:s}", "vendor", "0x10de", "class", "0x030200"));
		json_array_append_new(
		        pci, json_pack("{s:s, s:s}", "vendor", "0x10de", "class", "0x030200"));
		json_array_append_new(disks, json_pack("{s:s}", "name", "sda"));
		json_array_append_new(nics, json_pack("{s:i}", "speed_mbps", 100000));
	}
	json_object_set_new(doc, "gpus", gpus);
	json_object_set_new(doc, "pci", pci);
	json_object_set_new(doc, "disks", disks);
	json_object_set_new(doc, "nics", nics);
	for (size_t j = 0; j < N(rs); j++)
		if (rules_rule_matches(&rs[j], doc, mac1s, ""))
			fail_msg("a list of %d entries matched rule %s", RULES_LIST_MAX + 1,
			         rs[j].name);
	/* One entry fewer and each matches: the cap is the only reason. */
	json_array_remove(gpus, 0);
	json_array_remove(pci, 0);
	json_array_remove(disks, 0);
	json_array_remove(nics, 0);
	for (size_t j = 0; j < N(rs); j++)
		assert_true(rules_rule_matches(&rs[j], doc, mac1s, ""));
	json_decref(doc);
}

/* ---- the plan: registry profile > rule > default_profile ---- */

struct fixture {
	char dir[32], db[64], repo[64], conf[64];
	int repo_fd;
	struct rb_config *cfg;
	struct registry *reg;
	struct api *api;
	char auth[64];
};

static const char conf_text[] = "default_profile = \"deb\"\n"
                                "profile \"deb\" { image = \"debian\" }\n"
                                "profile \"gpu\" { image = \"cuda\" }\n"
                                "profile \"pinned\" { image = \"debian\" version = \"9\" }\n"
                                "rule \"gpu\" {\n"
                                "  profile = \"gpu\"\n"
                                "  gpu_vendor = \"0x10de\"\n"
                                "  min_gpus = 1\n"
                                "}\n";

static void write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void add_image(struct img_catalog *c, const char *name, const char *version)
{
	struct img_cat_image e = { .disk_size = 1 << 20, .stored_bytes = 4096 };

	snprintf(e.name, sizeof(e.name), "%s", name);
	snprintf(e.version, sizeof(e.version), "%s", version);
	snprintf(e.manifest, sizeof(e.manifest), "images/%s/%s.manifest.json", name, version);
	memset(e.manifest_sha256, 'a', 64);
	assert_int_equal(img_catalog_add_image(c, &e), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct img_catalog *c = NULL;
	char path[96], *json = NULL;
	size_t len = 0;

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/rbrulesXXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/registry.db", f->dir);
	snprintf(f->repo, sizeof(f->repo), "%s/repo", f->dir);
	snprintf(f->conf, sizeof(f->conf), "%s/rackbootd.conf", f->dir);
	if (mkdir(f->repo, 0755) < 0)
		return -1;
	write_file(f->conf, conf_text, strlen(conf_text));
	if (img_catalog_new(&c) < 0)
		return -1;
	add_image(c, "debian", "9");
	add_image(c, "debian", "12");
	add_image(c, "cuda", "3");
	if (img_catalog_serialize(c, &json, &len) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/catalog.json", f->repo);
	write_file(path, json, len);
	free(json);
	img_catalog_free(c);
	if (rb_config_load(f->conf, NULL, stderr, &f->cfg) < 0)
		return -1;
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

static unsigned call(struct fixture *f, const char *method, const char *path, const char *body,
                     json_t **ret_doc)
{
	struct api_request rq = {
		.method = method,
		.path = path,
		.body = body,
		.body_len = body ? strlen(body) : 0,
		.authorization = f->auth,
		.base = "http://10.77.0.1:8080",
	};
	struct api_reply rep;
	json_t *doc;

	assert_int_equal(api_handle(f->api, &rq, &rep), 0);
	doc = json_loads(rep.body, 0, NULL);
	free(rep.body);
	assert_non_null(doc);
	if (ret_doc)
		*ret_doc = doc;
	else
		json_decref(doc);
	return rep.status;
}

static void expect_plan(struct fixture *f, const char *profile, const char *source,
                        const char *image)
{
	char path[64];
	json_t *doc = NULL;

	snprintf(path, sizeof(path), "/api/v1/nodes/%s/plan", mac1s);
	assert_int_equal(call(f, "GET", path, NULL, &doc), 200);
	assert_string_equal(json_string_value(json_object_get(doc, "profile")), profile);
	assert_string_equal(json_string_value(json_object_get(doc, "profile_source")), source);
	assert_string_equal(
	        json_string_value(json_object_get(json_object_get(doc, "image"), "name")), image);
	json_decref(doc);
}

static void post_inventory(struct fixture *f, json_t *inv)
{
	char path[64], *text = json_dumps(inv, JSON_COMPACT);

	assert_non_null(text);
	snprintf(path, sizeof(path), "/api/v1/nodes/%s/inventory", mac1s);
	assert_int_equal(call(f, "POST", path, text, NULL), 200);
	free(text);
}

static void test_plan_sources(void **state)
{
	struct fixture *f = *state;
	char token[API_TOKEN_LEN + 1];
	json_t *dgx = fixture_doc("dgx"), *com = fixture_doc("commodity");

	assert_int_equal(api_token_issue(f->reg, mac1, token), 0);
	snprintf(f->auth, sizeof(f->auth), "Bearer %s", token);
	assert_int_equal(registry_node_set(f->reg, mac1, "provisioning", ""), 0);

	/* No inventory yet: no rule can match, default_profile. */
	expect_plan(f, "deb", "default", "debian");
	/* A GPU node: the rule. */
	post_inventory(f, dgx);
	expect_plan(f, "gpu", "rule:gpu", "cuda");
	/* The registry's profile wins over the rule. */
	assert_int_equal(registry_node_set(f->reg, mac1, NULL, "pinned"), 0);
	expect_plan(f, "pinned", "node", "debian");
	/* Back to no profile, and a new inventory without GPUs. */
	assert_int_equal(registry_node_set(f->reg, mac1, NULL, ""), 0);
	expect_plan(f, "gpu", "rule:gpu", "cuda");
	post_inventory(f, com);
	expect_plan(f, "deb", "default", "debian");
	json_decref(dgx);
	json_decref(com);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conditions),
		cmocka_unit_test(test_first_match),
		cmocka_unit_test(test_mac_hostname),
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_huge_lists),
		cmocka_unit_test_setup_teardown(test_plan_sources, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
