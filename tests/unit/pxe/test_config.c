/* Config loading and validation: defaults, every kind of bad value names
 * the file and line, overrides, boot-file mapping by architecture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "pxe/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpl[] = "/tmp/rbcfgXXXXXX";

static const char *write_conf(const char *text)
{
	int fd;

	memcpy(tmpl + strlen(tmpl) - 6, "XXXXXX", 6);
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return tmpl;
}

/* Loads text; returns the rc and leaves stderr text in errbuf. */
static int load(const char *text, struct rb_config **cfg, char *errbuf, size_t n)
{
	const char *p = write_conf(text);
	FILE *err = fmemopen(errbuf, n, "w");
	int r;

	memset(errbuf, 0, n);
	r = rb_config_load(p, NULL, err, cfg);
	fclose(err);
	unlink(p);
	return r;
}

static void test_defaults(void **state)
{
	struct rb_config *c = NULL;

	assert_int_equal(rb_config_load(NULL, NULL, stderr, &c), 0);
	assert_int_equal(c->dhcp_mode, RB_DHCP_PROXY);
	assert_int_equal(c->dhcp_port, 67);
	assert_int_equal(c->proxy_port, 4011);
	assert_int_equal(c->tftp_port, 69);
	assert_int_equal(c->tftp_max_blksize, 1468);
	assert_int_equal(c->tftp_max_window, 16);
	assert_int_equal(c->http_port, 8080);
	assert_string_equal(c->boot_bios, "undionly.kpxe");
	assert_string_equal(c->tftp_root, "/srv/rackboot/tftp");
	assert_null(c->path);
	rb_config_free(c);
}

static void test_full_file(void **state)
{
	struct rb_config *c = NULL;
	char err[512];
	char a[INET_ADDRSTRLEN];

	assert_int_equal(load("interface = \"br0\"\n"
	                      "dhcp {\n mode = \"full\"\n pool_start = \"10.77.0.100\"\n"
	                      " pool_end = \"10.77.0.200\"\n dns = {\"10.77.0.1\", \"10.77.0.2\"}\n"
	                      " host \"52:54:00:12:34:56\" { address = \"10.77.0.50\" hostname = "
	                      "\"node01\" }\n}\n"
	                      "tftp { max_windowsize = 32 }\n",
	                      &c, err, sizeof(err)),
	                 0);
	assert_int_equal(c->dhcp_mode, RB_DHCP_FULL);
	assert_string_equal(inet_ntop(AF_INET, &c->pool_start, a, sizeof(a)), "10.77.0.100");
	assert_int_equal(c->n_dns, 2);
	assert_int_equal(c->n_hosts, 1);
	assert_int_equal(c->hosts[0].mac[5], 0x56);
	assert_string_equal(c->hosts[0].hostname, "node01");
	assert_int_equal(c->tftp_max_window, 32);
	assert_non_null(c->path);
	rb_config_free(c);
}

struct bad {
	const char *text;
	const char *expect; /* substring of the error */
};

static const struct bad bad_vectors[] = {
	{ "\n\ndhcp { mode = \"fast\" }\n",
	  ":3: mode = \"fast\": expected \"proxy\" or \"full\" or \"off\"" },
	{ "dhcp {\n  port = 70000\n}\n", ":2: port = 70000: expected a port number" },
	{ "server_address = \"10.0.0.300\"\n",
	  ":1: server_address = \"10.0.0.300\": expected an IPv4" },
	{ "tftp {\n max_blksize = 7\n}\n",
	  ":2: max_blksize = 7: expected a number from 512 to 65464" },
	{ "tftp { root = \"relative/dir\" }\n",
	  ":1: root = \"relative/dir\": expected an absolute path" },
	{ "dhcp {\n host \"52:54:00:zz:34:56\" { address = \"10.0.0.5\" }\n}\n",
	  "expected a MAC address" },
	{ "dhcp {\n host \"52:54:00:12:34:56\" { hostname = \"x\" }\n}\n", "address is missing" },
	{ "tftp { port = \"abc\" }\n", ":1:" },
	{ "no_such_option = 1\n", ":1:" },
	{ "dhcp { mode = \"full\" }\n", "needs pool_start and pool_end" },
	{ "dhcp { mode = \"full\" pool_start = \"10.0.0.200\" pool_end = \"10.0.0.100\" }\n",
	  "pool_start must not be above pool_end" },
	{ "dhcp { netmask = \"255.0.255.0\" }\n", "not a contiguous netmask" },
	{ "log_level = \"loud\"\n", "expected \"error\" or \"warning\" or \"info\" or \"debug\"" },
	{ "user = \"bad user\"\n", "expected a name" },
	{ "discovery { cmdline = \"quiet\n  chain http://evil/x\" }\n", "discovery cmdline" },
	{ "discovery { kernel = \"vmlinuz || shell\" }\n", "discovery kernel" },
	{ "dhcp { mode = \"proxy\"\n", ":1: section opened here is never closed" },
	{ "dhcp { mode = \"proxy\" }\n}\n", ":2: unexpected closing brace" },
};

static void test_bad_values(void **state)
{
	for (size_t i = 0; i < sizeof(bad_vectors) / sizeof(bad_vectors[0]); i++) {
		struct rb_config *c = (void *)0x1;
		char err[512];
		int r = load(bad_vectors[i].text, &c, err, sizeof(err));

		if (r != -EINVAL || !strstr(err, bad_vectors[i].expect) ||
		    !strstr(err, "/tmp/rbcfg"))
			fail_msg("vector %zu: r=%d err=\"%s\", want \"%s\" with the file name", i,
			         r, err, bad_vectors[i].expect);
		/* Nothing was handed out. */
		assert_ptr_equal(c, (void *)0x1);
	}
}

static void test_missing_file(void **state)
{
	struct rb_config *c = NULL;
	char err[256] = "";
	FILE *f = fmemopen(err, sizeof(err), "w");

	assert_int_equal(rb_config_load("/nonexistent/rb.conf", NULL, f, &c), -ENOENT);
	fclose(f);
	assert_non_null(strstr(err, "/nonexistent/rb.conf: cannot read"));
	assert_null(c);
}

static void test_overrides(void **state)
{
	struct rb_config_overrides o = {
		.interface = "eth9", .root = "/srv/x", .dhcp_mode = "full", .http_port = "81"
	};
	struct rb_config *c = NULL;
	char err[256];
	FILE *f;

	/* full without a pool is refused even from the command line */
	f = fmemopen(err, sizeof(err), "w");
	assert_int_equal(rb_config_load(NULL, &o, f, &c), -EINVAL);
	fclose(f);
	o.dhcp_mode = "off";
	assert_int_equal(rb_config_load(NULL, &o, stderr, &c), 0);
	assert_string_equal(c->interface, "eth9");
	assert_string_equal(c->tftp_root, "/srv/x/tftp");
	assert_string_equal(c->http_boot_root, "/srv/x/boot");
	assert_string_equal(c->repo_root, "/srv/x/repo");
	assert_int_equal(c->http_port, 81);
	rb_config_free(c);
	o.http_port = "0";
	f = fmemopen(err, sizeof(err), "w");
	assert_int_equal(rb_config_load(NULL, &o, f, &c), -EINVAL);
	fclose(f);
}

static void test_boot_file_by_arch(void **state)
{
	struct rb_config *c = NULL;
	bool http = true;

	assert_int_equal(rb_config_load(NULL, NULL, stderr, &c), 0);
	assert_string_equal(rb_config_boot_file(c, 0, &http), "undionly.kpxe");
	assert_false(http);
	assert_string_equal(rb_config_boot_file(c, 7, &http), "snponly.efi");
	assert_string_equal(rb_config_boot_file(c, 9, &http), "snponly.efi");
	assert_string_equal(rb_config_boot_file(c, 11, &http), "snponly-arm64.efi");
	assert_string_equal(rb_config_boot_file(c, 16, &http), "ipxe.efi");
	assert_true(http);
	assert_null(rb_config_boot_file(c, 42, &http));
	rb_config_free(c);
}

static void test_print_roundtrip(void **state)
{
	struct rb_config *c = NULL, *c2 = NULL;
	char err[512];
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	assert_int_equal(
	        load("dhcp { mode = \"full\" pool_start = \"10.1.0.10\" pool_end = "
	             "\"10.1.0.20\" host \"52:54:00:00:00:01\" { address = \"10.1.0.5\" } }\n",
	             &c, err, sizeof(err)),
	        0);
	f = open_memstream(&buf, &len);
	rb_config_print(c, f);
	fclose(f);
	/* What --check-config prints is itself a valid config with the same values. */
	assert_int_equal(load(buf, &c2, err, sizeof(err)), 0);
	assert_int_equal(c2->dhcp_mode, RB_DHCP_FULL);
	assert_int_equal(c2->n_hosts, 1);
	assert_int_equal(c2->pool_end.s_addr, c->pool_end.s_addr);
	free(buf);
	rb_config_free(c);
	rb_config_free(c2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),        cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_bad_values),      cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_overrides),       cmocka_unit_test(test_boot_file_by_arch),
		cmocka_unit_test(test_print_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
