/* The kernel command line and plan parsers of `rackboot-agent run`: tables
 * of good and bad inputs, each bad one checked for the field its error
 * names; the plan's MAC must be this node's; ret is untouched on failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK  "0123456789abcdef0123456789abcdef"
#define MAC  "52:54:00:12:34:56"
#define BASE "rackboot.server=http://10.77.0.1:8080 rackboot.mac=" MAC " rackboot.token=" TOK

static int parse_cl(const char *s, struct agent_cmdline *c, char *err, size_t errlen)
{
	return agent_cmdline_parse(s, strlen(s), c, err, errlen);
}

static void test_cmdline_good(void **state)
{
	struct agent_cmdline c;
	char err[256] = "";

	(void)state;
	assert_int_equal(parse_cl("BOOT_IMAGE=/vmlinuz console=ttyS0 " BASE
	                          " rackboot.mode=provision quiet\n",
	                          &c, err, sizeof(err)),
	                 0);
	assert_string_equal(c.server, "http://10.77.0.1:8080");
	assert_string_equal(c.mac, MAC);
	assert_string_equal(c.token, TOK);
	assert_int_equal(c.mode, AGENT_MODE_PROVISION);
	assert_int_equal(agent_cmdline_check(&c, err, sizeof(err)), 0);

	/* upper-case and dashed MAC normalised; trailing '/' dropped; tabs */
	assert_int_equal(parse_cl("rackboot.server=https://boot.example/rb/\trackboot.mac=52-54-00-"
	                          "AB-CD-EF rackboot.token=" TOK " rackboot.mode=discovery",
	                          &c, err, sizeof(err)),
	                 0);
	assert_string_equal(c.server, "https://boot.example/rb");
	assert_string_equal(c.mac, "52:54:00:ab:cd:ef");
	assert_int_equal(c.mode, AGENT_MODE_DISCOVERY);

	/* quoted words of others are skipped whole, even holding rackboot.* text */
	assert_int_equal(
	        parse_cl("foo=\"a rackboot.mac=00:00:00:00:00:01 b\" " BASE, &c, err, sizeof(err)),
	        0);
	assert_string_equal(c.mac, MAC);

	/* after "--" the words are init's */
	assert_int_equal(parse_cl(BASE " -- rackboot.mac=00:00:00:00:00:01 rackboot.bogus=1", &c,
	                          err, sizeof(err)),
	                 0);
	assert_string_equal(c.mac, MAC);

	/* /init's own settings anywhere on the line are skipped */
	assert_int_equal(parse_cl("rackboot.shell_timeout=0 " BASE " rackboot.debug=1", &c, err,
	                          sizeof(err)),
	                 0);
	assert_string_equal(c.mac, MAC);

	/* nothing at all: parses, the check names what is missing */
	assert_int_equal(parse_cl("console=ttyS0", &c, err, sizeof(err)), 0);
	assert_int_equal(c.server[0], '\0');
	assert_int_equal(agent_cmdline_check(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "rackboot.server"));
	assert_int_equal(parse_cl("rackboot.server=http://a", &c, err, sizeof(err)), 0);
	assert_int_equal(agent_cmdline_check(&c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "rackboot.mac"));
}

static void test_cmdline_bad(void **state)
{
	static const struct {
		const char *line, *needle;
	} bad[] = {
		{ BASE " rackboot.mac=" MAC, "given twice" },
		{ BASE " rackboot.tokn=" TOK, "unknown parameter rackboot.tokn" },
		{ BASE " rackboot.mode=install", "rackboot.mode" },
		{ BASE " rackboot.mode=", "is empty" },
		{ BASE " rackboot.mode", "has no value" },
		{ "rackboot.server=ftp://10.0.0.1 rackboot.mac=" MAC, "http:// or https://" },
		{ "rackboot.server=file:///etc/passwd", "http:// or https://" },
		{ "rackboot.server=http://", "no host" },
		{ "rackboot.server=http:///x", "no host" },
		{ "rackboot.server=http://a/b?x=1", "0x3f" },
		{ "rackboot.server=http://a/#frag", "0x23" },
		{ "rackboot.server=http://a\"b\"", "never quoted" },
		{ "\"rackboot.server=http://a\"", "never quoted" },
		{ "rackboot.mac=52:54:00:12:34", "MAC address" },
		{ "rackboot.mac=52:54:00:12:34:5g", "MAC address" },
		{ "rackboot.mac=52:54:00:12:34:56:78", "MAC address" },
		{ "rackboot.token=0123", "32 to 64 hex" },
		{ "rackboot.token=0123456789ABCDEF0123456789ABCDEF", "lowercase hex" },
		{ "rackboot.token=" TOK TOK "0", "32 to 64 hex" },
		{ "rackboot.mac=52:54:00:12:34:56\x01", "0x01" },
	};
	struct agent_cmdline c, keep;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&c, 0x5a, sizeof(c));
		keep = c;
		err[0] = '\0';
		assert_int_equal(parse_cl(bad[i].line, &c, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].needle))
			fail_msg("case %zu (%s): error \"%s\" does not say \"%s\"", i, bad[i].line,
			         err, bad[i].needle);
		assert_memory_equal(&c, &keep, sizeof(c)); /* untouched */
	}
	/* NUL inside, over-long line, over-long value */
	assert_int_equal(agent_cmdline_parse("a\0b", 3, &c, err, sizeof(err)), -EINVAL);
	{
		size_t n = AGENT_CMDLINE_MAX + 1;
		char *big = malloc(n);

		assert_non_null(big);
		memset(big, ' ', n);
		assert_int_equal(agent_cmdline_parse(big, n, &c, err, sizeof(err)), -EINVAL);
		memcpy(big, "rackboot.server=http://", 23);
		memset(big + 23, 'a', 2000);
		assert_int_equal(agent_cmdline_parse(big, 2023, &c, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "longer than"));
		free(big);
	}
}

/* ---- plans ---- */

#define PLAN_HEAD "{\"mac\":\"" MAC "\",\"mode\":\"provision\",\"state\":\"provisioning\","
#define IMAGE                                                                                      \
	"\"image\":{\"repo\":\"http://10.77.0.1:8080/repo/\",\"name\":\"debian12\",\"version\":"   \
	"\"3\",\"type\":\"rackboot\"}"
#define GOOD                                                                                       \
	PLAN_HEAD "\"action\":\"image\",\"profile\":\"debian12\"," IMAGE                           \
	          ",\"disk\":\"\",\"wipe\":\"metadata\",\"grow_last_partition\":true,"             \
	          "\"after\":\"reboot\",\"future_field\":[1,2,3]}"

static int parse_plan(const char *s, const char *mac, struct agent_plan *p, char *err,
                      size_t errlen)
{
	return agent_plan_parse(s, strlen(s), mac, p, err, errlen);
}

static void test_plan_good(void **state)
{
	struct agent_plan p;
	char err[256] = "";

	(void)state;
	assert_int_equal(parse_plan(GOOD, MAC, &p, err, sizeof(err)), 0);
	assert_string_equal(p.mac, MAC);
	assert_int_equal(p.mode, AGENT_MODE_PROVISION);
	assert_int_equal(p.action, AGENT_ACTION_IMAGE);
	assert_string_equal(p.state, "provisioning");
	assert_string_equal(p.profile, "debian12");
	assert_true(p.has_image);
	assert_string_equal(p.image.repo, "http://10.77.0.1:8080/repo");
	assert_string_equal(p.image.name, "debian12");
	assert_string_equal(p.image.version, "3");
	assert_string_equal(p.image.type, "rackboot");
	assert_string_equal(p.disk, "");
	assert_int_equal(p.wipe, AGENT_WIPE_METADATA);
	assert_true(p.grow_last_partition);
	assert_int_equal(p.after, AGENT_AFTER_REBOOT);

	/* the expected MAC in another spelling still matches */
	assert_int_equal(parse_plan(GOOD, "52-54-00-12-34-56", &p, err, sizeof(err)), 0);

	/* explicit disk, full wipe, poweroff, profile null, plain type */
	assert_int_equal(parse_plan(PLAN_HEAD
	                            "\"action\":\"image\",\"profile\":null,\"image\":{\"repo\":"
	                            "\"https://r\",\"name\":\"x\",\"version\":\"1.0\",\"type\":"
	                            "\"plain\"},\"disk\":\"/dev/nvme0n1\",\"wipe\":\"full\","
	                            "\"grow_last_partition\":false,\"after\":\"poweroff\"}",
	                            NULL, &p, err, sizeof(err)),
	                 0);
	assert_string_equal(p.disk, "/dev/nvme0n1");
	assert_int_equal(p.wipe, AGENT_WIPE_FULL);
	assert_false(p.grow_last_partition);
	assert_int_equal(p.after, AGENT_AFTER_POWEROFF);
	assert_string_equal(p.profile, "");
	assert_string_equal(p.image.type, "plain");

	/* discovery: inventory, no image; after defaults to poweroff */
	assert_int_equal(parse_plan("{\"mac\":\"" MAC "\",\"mode\":\"discovery\",\"state\":\"new\","
	                            "\"action\":\"inventory\",\"image\":null}",
	                            MAC, &p, err, sizeof(err)),
	                 0);
	assert_int_equal(p.action, AGENT_ACTION_INVENTORY);
	assert_false(p.has_image);
	assert_int_equal(p.after, AGENT_AFTER_POWEROFF);
	assert_int_equal(parse_plan("{\"mac\":\"" MAC "\",\"mode\":\"discovery\",\"action\":"
	                            "\"inventory\",\"after\":\"none\"}",
	                            MAC, &p, err, sizeof(err)),
	                 0);
	assert_int_equal(p.after, AGENT_AFTER_NONE);
	/* the fast swap (agent/kexec.c) */
	assert_int_equal(parse_plan(PLAN_HEAD "\"action\":\"image\"," IMAGE
	                                      ",\"disk\":\"\",\"wipe\":\"metadata\","
	                                      "\"grow_last_partition\":false,\"after\":\"kexec\"}",
	                            NULL, &p, err, sizeof(err)),
	                 0);
	assert_int_equal(p.after, AGENT_AFTER_KEXEC);
	assert_string_equal(agent_after_name(p.after), "kexec");
}

static void test_plan_bad(void **state)
{
	static const struct {
		const char *json, *needle;
	} bad[] = {
		{ "", "not JSON" },
		{ "[]", "expected a JSON object" },
		{ "{\"mac\":\"" MAC "\",\"mac\":\"" MAC "\"}", "not JSON" }, /* duplicate key */
		{ "{\"mode\":\"provision\"}", "mac is missing" },
		{ "{\"mac\":5}", "mac: expected a string" },
		{ "{\"mac\":\"52:54:00:12:34\"}", "plan: mac" },
		{ "{\"mac\":\"52:54:00:12:34:57\",\"mode\":\"provision\"}", "plan is for" },
		{ "{\"mac\":\"" MAC "\"}", "mode is missing" },
		{ "{\"mac\":\"" MAC "\",\"mode\":\"install\"}", "mode: expected" },
		{ PLAN_HEAD "\"action\":\"dance\"}", "action: expected" },
		{ PLAN_HEAD "\"state\":7}", "not JSON" }, /* duplicate "state" */
		{ "{\"mac\":\"" MAC "\",\"mode\":\"provision\",\"state\":7}", "state: expected" },
		{ "{\"mac\":\"" MAC "\",\"mode\":\"discovery\",\"action\":\"image\"}",
		  "discovery plan" },
		{ PLAN_HEAD "\"action\":\"image\",\"after\":\"reboot\"}", "image is missing" },
		{ PLAN_HEAD "\"action\":\"image\",\"after\":\"reboot\",\"image\":\"x\"}",
		  "image: expected an object" },
		{ PLAN_HEAD "\"action\":\"image\",\"image\":{}}", "after is missing" },
		{ PLAN_HEAD "\"action\":\"image\",\"after\":\"halt\"}", "after: expected" },
		{ PLAN_HEAD
		  "\"action\":\"image\",\"after\":\"reboot\",\"image\":{\"repo\":\"file:///"
		  "x\",\"name\":\"a\",\"version\":\"1\",\"type\":\"rackboot\"}}",
		  "image.repo" },
		{ PLAN_HEAD
		  "\"action\":\"image\",\"after\":\"reboot\",\"image\":{\"repo\":\"http://"
		  "r\",\"name\":\"..\",\"version\":\"1\",\"type\":\"rackboot\"}}",
		  "image.name" },
		{ PLAN_HEAD
		  "\"action\":\"image\",\"after\":\"reboot\",\"image\":{\"repo\":\"http://"
		  "r\",\"name\":\"a\",\"version\":\"1/../2\",\"type\":\"rackboot\"}}",
		  "image.version" },
		{ PLAN_HEAD
		  "\"action\":\"image\",\"after\":\"reboot\",\"image\":{\"repo\":\"http://"
		  "r\",\"name\":\"a\",\"version\":\"1\",\"type\":\"qcow2\"}}",
		  "image.type" },
		{ PLAN_HEAD
		  "\"action\":\"image\",\"after\":\"reboot\",\"image\":{\"repo\":\"http://"
		  "r\",\"name\":\"a\",\"version\":\"1\"}}",
		  "image.type is missing" },
		{ PLAN_HEAD "\"action\":\"image\",\"after\":\"reboot\"," IMAGE "}",
		  "disk is missing" },
		{ PLAN_HEAD "\"action\":\"image\",\"after\":\"reboot\"," IMAGE
		            ",\"disk\":\"/etc/x\"}",
		  "disk: expected" },
		{ PLAN_HEAD "\"action\":\"image\",\"after\":\"reboot\"," IMAGE
		            ",\"disk\":\"/dev/../etc/passwd\"}",
		  "disk: expected" },
		{ PLAN_HEAD "\"action\":\"image\",\"after\":\"reboot\"," IMAGE ",\"disk\":\"\"}",
		  "wipe is missing" },
		{ PLAN_HEAD "\"action\":\"image\",\"after\":\"reboot\"," IMAGE
		            ",\"disk\":\"\",\"wipe\":\"shred\"}",
		  "wipe: expected" },
		{ PLAN_HEAD "\"action\":\"image\",\"after\":\"reboot\"," IMAGE
		            ",\"disk\":\"\",\"wipe\":\"none\"}",
		  "grow_last_partition is missing" },
		{ PLAN_HEAD "\"action\":\"image\",\"after\":\"reboot\"," IMAGE
		            ",\"disk\":\"\",\"wipe\":\"none\",\"grow_last_partition\":\"yes\"}",
		  "grow_last_partition: expected true or false" },
		{ "{\"mac\":\"" MAC "\",\"mode\":\"provision\",\"profile\":\"a\\u0001\"}",
		  "not printable" },
		{ "{\"mac\":\"" MAC "\",\"mode\":\"provision\",\"state\":\"\\u00e9\"}",
		  "not printable" },
	};
	struct agent_plan p, keep;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&p, 0x5a, sizeof(p));
		keep = p;
		err[0] = '\0';
		assert_int_equal(parse_plan(bad[i].json, MAC, &p, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].needle))
			fail_msg("case %zu (%s): error \"%s\" does not say \"%s\"", i, bad[i].json,
			         err, bad[i].needle);
		assert_memory_equal(&p, &keep, sizeof(p));
	}
	/* over the size cap */
	{
		size_t n = AGENT_PLAN_MAX + 1;
		char *big = malloc(n);

		assert_non_null(big);
		memset(big, ' ', n);
		assert_int_equal(agent_plan_parse(big, n, MAC, &p, err, sizeof(err)), -EFBIG);
		free(big);
	}
	/* a long string value is refused, naming the field */
	{
		char doc[2048];
		char longp[300];

		memset(longp, 'p', sizeof(longp) - 1);
		longp[sizeof(longp) - 1] = '\0';
		snprintf(doc, sizeof(doc),
		         "{\"mac\":\"" MAC "\",\"mode\":\"provision\",\"profile\":\"%s\"}", longp);
		assert_int_equal(parse_plan(doc, MAC, &p, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "profile: longer than"));
	}
}

/* ---- stage 2: packages, post_install, node token ---- */

#define STAGE2_HEAD                                                                                \
	PLAN_HEAD "\"action\":\"image\",\"profile\":\"gpu\"," IMAGE                                \
	          ",\"disk\":\"\",\"wipe\":\"none\",\"grow_last_partition\":false,\"after\":"      \
	          "\"none\","
#define POST_OK                                                                                    \
	"\"post_install\":{\"hostname\":\"gpu-525400123456\",\"ssh_keys\":[\"ssh-ed25519 "         \
	"AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@site\"],\"kernel_args\":\"iommu=pt\","                   \
	"\"root_partition\":2,\"update_interval_s\":30,\"update_jitter_s\":0,"                     \
	"\"network\":\"dhcp\"}"
#define TOKEN "\"node_token\":\"0123456789abcdef0123456789abcdef\""

static void test_plan_stage2(void **state)
{
	struct agent_plan p;
	char err[256] = "";

	(void)state;
	/* a plan without post_install (an older server) has no stage 2 */
	assert_int_equal(parse_plan(GOOD, MAC, &p, err, sizeof(err)), 0);
	assert_false(p.has_stage2);
	assert_int_equal(p.n_packages, 0);
	agent_plan_fini(&p);

	assert_int_equal(parse_plan(STAGE2_HEAD POST_OK
	                            ",\"packages\":[{\"name\":\"nvidia-driver\","
	                            "\"version\":\"550.54.15\"},{\"name\":\"cuda\","
	                            "\"version\":\"12.4~rc1\"}]," TOKEN
	                            ",\"package_sets\":[\"gpu\"]}",
	                            MAC, &p, err, sizeof(err)),
	                 0);
	assert_true(p.has_stage2);
	assert_int_equal(p.n_packages, 2);
	assert_string_equal(p.packages[0].name, "nvidia-driver");
	assert_string_equal(p.packages[1].version, "12.4~rc1");
	assert_string_equal(p.post.hostname, "gpu-525400123456");
	assert_int_equal(p.post.n_ssh_keys, 1);
	assert_string_equal(p.post.ssh_keys[0],
	                    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOps ops@site");
	assert_string_equal(p.post.kernel_args, "iommu=pt");
	assert_int_equal(p.post.root_partition, 2);
	assert_int_equal(p.post.update_interval_s, 30);
	assert_int_equal(p.post.update_jitter_s, 0);
	assert_true(p.post.network_dhcp);
	assert_string_equal(p.node_token, "0123456789abcdef0123456789abcdef");
	agent_plan_fini(&p);
	assert_null(p.packages);

	static const struct {
		const char *tail, *want;
	} bad[] = {
		{ POST_OK "," TOKEN "}", "plan: packages: expected an array" },
		{ POST_OK ",\"packages\":[]}", "plan: node_token is missing" },
		{ POST_OK ",\"packages\":[],\"node_token\":\"0123456789ABCDEF0123456789abcdef\"}",
		  "node_token: expected 32 to 64 lowercase hex" },
		{ POST_OK ",\"packages\":[{\"name\":\"a\"}]," TOKEN "}",
		  "packages[0].version is missing" },
		{ POST_OK ",\"packages\":[{\"name\":\"../a\",\"version\":\"1\"}]," TOKEN "}",
		  "packages[0]: expected a package name" },
		{ POST_OK ",\"packages\":[{\"name\":\"a\",\"version\":\"1\"},{\"name\":\"a\","
		          "\"version\":\"2\"}]," TOKEN "}",
		  "a is listed twice" },
		{ POST_OK ",\"packages\":[7]," TOKEN "}", "packages[0]: expected an object" },
		{ "\"post_install\":{\"hostname\":\"a_b\",\"ssh_keys\":[],\"kernel_args\":\"\","
		  "\"root_partition\":0},\"packages\":[]," TOKEN "}",
		  "post_install.hostname" },
		{ "\"post_install\":{\"hostname\":\"\",\"ssh_keys\":[],\"kernel_args\":\"a=$(b)\","
		  "\"root_partition\":0},\"packages\":[]," TOKEN "}",
		  "post_install.kernel_args" },
		{ "\"post_install\":{\"hostname\":\"\",\"ssh_keys\":[\"x y\"],\"kernel_args\":\"\","
		  "\"root_partition\":0},\"packages\":[]," TOKEN "}",
		  "post_install.ssh_keys[0]" },
		{ "\"post_install\":{\"hostname\":\"\",\"ssh_keys\":[],\"kernel_args\":\"\","
		  "\"root_partition\":129},\"packages\":[]," TOKEN "}",
		  "post_install.root_partition" },
		{ "\"post_install\":{\"hostname\":\"\",\"ssh_keys\":[],\"kernel_args\":\"\"},"
		  "\"packages\":[]," TOKEN "}",
		  "post_install.root_partition" },
		{ "\"post_install\":{\"hostname\":\"\",\"ssh_keys\":[],\"kernel_args\":\"\","
		  "\"root_partition\":0,\"update_interval_s\":4},\"packages\":[]," TOKEN "}",
		  "post_install.update_interval_s: expected 5 to 86400" },
		{ "\"post_install\":{\"hostname\":\"\",\"ssh_keys\":[],\"kernel_args\":\"\","
		  "\"root_partition\":0,\"update_jitter_s\":\"9\"},\"packages\":[]," TOKEN "}",
		  "post_install.update_jitter_s" },
		{ "\"post_install\":{\"hostname\":\"\",\"ssh_keys\":[],\"kernel_args\":\"\","
		  "\"root_partition\":0,\"network\":\"static\"},\"packages\":[]," TOKEN "}",
		  "post_install.network: expected \"image\" or \"dhcp\"" },
		{ "\"post_install\":[]}", "post_install: expected an object" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char doc[2048];

		snprintf(doc, sizeof(doc), "%s%s", STAGE2_HEAD, bad[i].tail);
		p.n_packages = 77;
		if (parse_plan(doc, MAC, &p, err, sizeof(err)) != -EINVAL ||
		    !strstr(err, bad[i].want))
			fail_msg("vector %zu: err \"%s\", want \"%s\"", i, err, bad[i].want);
		assert_int_equal(p.n_packages, 77); /* untouched */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmdline_good), cmocka_unit_test(test_cmdline_bad),
		cmocka_unit_test(test_plan_good),    cmocka_unit_test(test_plan_bad),
		cmocka_unit_test(test_plan_stage2),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
