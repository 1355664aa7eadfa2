/* Stage 3's parsers: agent.conf, the /desired document, efibootmgr's
 * listing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/update.h"

#define CONF                                                                                       \
	"# as stage 2 writes it\nserver = http://10.77.0.1:8080/\nmac = 52:54:00:AB:00:01\n"       \
	"token = 0123456789abcdef0123456789abcdef\n  image = debian12  \nimage_version = 3\n"

static int conf(const char *text, struct agent_update_conf *c, char *err, size_t n)
{
	return agent_update_conf_parse(text, strlen(text), c, err, n);
}

static void test_conf(void **state)
{
	struct agent_update_conf c;
	char err[256];

	(void)state;
	assert_int_equal(conf(CONF, &c, err, sizeof(err)), 0);
	assert_string_equal(c.server, "http://10.77.0.1:8080");
	assert_string_equal(c.mac, "52:54:00:ab:00:01");
	assert_string_equal(c.repo, "http://10.77.0.1:8080/repo");
	assert_string_equal(c.image, "debian12");
	assert_string_equal(c.image_version, "3");
	assert_int_equal(c.interval_s, 300);
	assert_int_equal(c.jitter_s, 60);
	assert_int_equal(conf(CONF "repo = https://cdn/r\ninterval_s = 5\njitter_s = 0\n", &c, err,
	                      sizeof(err)),
	                 0);
	assert_string_equal(c.repo, "https://cdn/r");
	assert_int_equal(c.interval_s, 5);
	assert_int_equal(c.jitter_s, 0);
	assert_int_equal(c.n_repo_hosts, 0);
	assert_int_equal(conf(CONF "repo_hosts = cache1.rack3.example  [fd00::5]:8080,10.0.0.5\n",
	                      &c, err, sizeof(err)),
	                 0);
	assert_int_equal(c.n_repo_hosts, 3);
	assert_string_equal(c.repo_hosts[1], "[fd00::5]:8080");
	assert_int_equal(conf(CONF "repo_hosts =\n", &c, err, sizeof(err)), 0);
	assert_int_equal(c.n_repo_hosts, 0);

	static const struct {
		const char *text, *want;
	} bad[] = {
		{ CONF "interval_s = 4\n", "line 7: interval_s: expected 5 to 86400" },
		{ CONF "color = blue\n", "line 7: unknown key \"color\"" },
		{ CONF "mac = 52:54:00:ab:00:02\n", "line 7: mac given twice" },
		{ CONF "nonsense\n", "line 7: expected key = value" },
		{ "mac = 52:54:00:ab:00:01\ntoken = 0123456789abcdef0123456789abcdef\n",
		  "server is missing" },
		{ "server = http://s\nmac = 52:54:00:ab:00:01\n", "token is missing" },
		{ "server = ftp://s\n", "line 1:" },
		{ "server = http://s\nmac = 52-54\n", "line 2: mac: expected" },
		{ "server = http://s\ntoken = ABC\n", "line 2: token: expected" },
		{ CONF "image = ../x\n", "line 7: image given twice" },
		{ "image = ../x\n", "line 1: image: expected" },
		{ CONF "repo_hosts = ok.example http://evil/\n",
		  "line 7: repo_hosts: \"http://evil/\": expected host or host:port" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c.interval_s = 77;
		if (conf(bad[i].text, &c, err, sizeof(err)) != -EINVAL || !strstr(err, bad[i].want))
			fail_msg("vector %zu: err \"%s\", want \"%s\"", i, err, bad[i].want);
		assert_int_equal(c.interval_s, 77); /* untouched */
	}
}

static void test_desired(void **state)
{
	static const char good[] =
	        "{\"generation\":\"00112233445566778899aabbccddeeff\",\"hold\":false,"
	        "\"image\":{\"name\":\"debian12\",\"version\":\"3\"},\"packages\":[{\"name\":"
	        "\"cuda\",\"version\":\"12.4~rc1\"}],\"reimage\":true,\"future\":1}";
	struct agent_desired d;
	char err[256];

	(void)state;
	assert_int_equal(agent_desired_parse(good, strlen(good), &d, err, sizeof(err)), 0);
	assert_string_equal(d.generation, "00112233445566778899aabbccddeeff");
	assert_false(d.hold);
	assert_true(d.reimage);
	assert_string_equal(d.image_version, "3");
	assert_int_equal(d.n_packages, 1);
	assert_string_equal(d.packages[0].version, "12.4~rc1");
	agent_desired_fini(&d);

	static const char *const bad[] = {
		"[]",
		"{\"generation\":\"g\",\"hold\":0,\"image\":{\"name\":\"a\",\"version\":\"1\"},"
		"\"packages\":[],\"reimage\":false}",
		"{\"generation\":\"g\",\"hold\":false,\"image\":{\"name\":\"a/"
		"b\",\"version\":\"1\"},"
		"\"packages\":[],\"reimage\":false}",
		"{\"generation\":\"g\",\"hold\":false,\"image\":{\"name\":\"a\",\"version\":\"1\"},"
		"\"packages\":[{\"name\":\"x\"}],\"reimage\":false}",
		"{\"hold\":false,\"image\":{\"name\":\"a\",\"version\":\"1\"},\"packages\":[],"
		"\"reimage\":false}",
		"{\"generation\":\"g\",\"hold\":false,\"image\":{\"name\":\"a\",\"version\":\"1\"},"
		"\"packages\":[{\"name\":\"x\",\"version\":\"1 2\"}],\"reimage\":false}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (agent_desired_parse(bad[i], strlen(bad[i]), &d, err, sizeof(err)) >= 0 ||
		    !err[0])
			fail_msg("vector %zu accepted", i);
	}
}

static void test_efi(void **state)
{
	static const char listing[] =
	        "BootCurrent: 0001\nTimeout: 0 seconds\nBootOrder: 0001,0003\n"
	        "Boot0000* UiApp\tFvFile(x)\n"
	        "Boot0001* debian\tHD(1,GPT,...)\n"
	        "Boot000A  UEFI HTTPv4 (MAC:525400123456)\tPciRoot(0x0)\n"
	        "Boot0003* UEFI PXEv4 (MAC:525400123456)\tPciRoot(0x0)\n";
	char e[5];

	(void)state;
	assert_int_equal(agent_efi_netboot_entry(listing, e), 0);
	assert_string_equal(e, "000A"); /* the first network entry in the listing */
	assert_int_equal(agent_efi_netboot_entry("Boot0003* Network Boot\n", e), 0);
	assert_string_equal(e, "0003");
	assert_int_equal(agent_efi_netboot_entry("BootOrder: 0001\nBoot0001* debian\n", e),
	                 -ENOENT);
	assert_int_equal(agent_efi_netboot_entry("BootXYZW* PXE\n", e), -ENOENT);
	assert_int_equal(agent_efi_netboot_entry("", e), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conf),
		cmocka_unit_test(test_desired),
		cmocka_unit_test(test_efi),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
