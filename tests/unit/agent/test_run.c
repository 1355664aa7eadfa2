/* `rackboot-agent run` without a server: the automatic disk choice on a
 * sysfs tree built here (virtual, removable, read-only and small disks left
 * out, the smallest that fits wins, ties by name in version order), and
 * the command's early exits (no identity, a bad kernel command line, a
 * server that refuses connections). The flow against the real rackbootd
 * is tests/integration/test_agent_run.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GIB (1024ULL * 1024 * 1024)

static char root[64];

static void put(const char *rel, const char *value)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		mkdir(p, 0755);
		*s = '/';
	}
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(value, f);
	fclose(f);
}

/* sys/block/<name> with size in GiB, removable, ro */
static void disk(const char *name, unsigned long long gib, int removable, int ro)
{
	char rel[128], v[64];

	snprintf(rel, sizeof(rel), "sys/block/%s/size", name);
	snprintf(v, sizeof(v), "%llu\n", gib * GIB / 512);
	put(rel, v);
	snprintf(rel, sizeof(rel), "sys/block/%s/removable", name);
	put(rel, removable ? "1\n" : "0\n");
	snprintf(rel, sizeof(rel), "sys/block/%s/ro", name);
	put(rel, ro ? "1\n" : "0\n");
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/rbt-run.XXXXXX");
	if (!mkdtemp(root))
		return -1;
	disk("loop0", 1, 0, 0);
	disk("ram0", 1, 0, 0);
	disk("zram0", 1, 0, 0);
	disk("sr0", 1, 1, 1);
	disk("md0", 1, 0, 0);
	disk("dm-0", 1, 0, 0);
	disk("nbd0", 1, 0, 0);
	disk("sda", 2000, 0, 0);
	disk("sdb", 8, 1, 0); /* USB stick */
	disk("sdc", 4, 0, 1); /* read-only */
	disk("nvme10n1", 480, 0, 0);
	disk("nvme2n1", 480, 0, 0); /* same size: version order picks it over nvme10n1 */
	disk("mdraid", 16, 0, 0);   /* "md" without a digit is a real name */
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_pick(void **state)
{
	char dev[128], err[512];

	(void)state;
	assert_int_equal(agent_pick_disk(root, 1 * GIB, dev, sizeof(dev), err, sizeof(err)), 0);
	assert_string_equal(dev, "/dev/mdraid");
	assert_int_equal(agent_pick_disk(root, 17 * GIB, dev, sizeof(dev), err, sizeof(err)), 0);
	assert_string_equal(dev, "/dev/nvme2n1");
	assert_int_equal(agent_pick_disk(root, 481 * GIB, dev, sizeof(dev), err, sizeof(err)), 0);
	assert_string_equal(dev, "/dev/sda");
	assert_int_equal(agent_pick_disk(root, 2001 * GIB, dev, sizeof(dev), err, sizeof(err)),
	                 -ENODEV);
	assert_non_null(strstr(err, "sdb 8589934592 bytes removable"));
	assert_non_null(strstr(err, "sdc 4294967296 bytes read-only"));
	assert_non_null(strstr(err, "sda 2147483648000 bytes too small"));
	assert_null(strstr(err, "loop0"));
	assert_null(strstr(err, "dm-0"));

	/* cciss!c0d0 becomes /dev/cciss/c0d0; a malformed size is skipped */
	disk("cciss!c0d0", 1, 0, 0);
	put("sys/block/vda/size", "lots\n");
	assert_int_equal(agent_pick_disk(root, 1, dev, sizeof(dev), err, sizeof(err)), 0);
	assert_string_equal(dev, "/dev/cciss/c0d0");

	assert_int_equal(agent_pick_disk("/nonexistent", 1, dev, sizeof(dev), err, sizeof(err)),
	                 -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/sys/block"));
}

static int run(const char *cmdline, const char *extra1, const char *extra2)
{
	char p[128];
	char *argv[12];
	int argc = 0;
	FILE *f;

	snprintf(p, sizeof(p), "%s/cmdline", root);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(cmdline, f);
	fclose(f);
	argv[argc++] = "run";
	argv[argc++] = "--cmdline";
	argv[argc++] = p;
	argv[argc++] = "--no-after";
	argv[argc++] = "--retries";
	argv[argc++] = "0";
	argv[argc++] = "--timeout-s";
	argv[argc++] = "2";
	if (extra1)
		argv[argc++] = (char *)extra1;
	if (extra2)
		argv[argc++] = (char *)extra2;
	argv[argc] = NULL;
	return agent_cmd_run(argc, argv);
}

static void test_command(void **state)
{
	char *help[] = { "run", "--help", NULL };
	char *stray[] = { "run", "x", NULL };

	(void)state;
	assert_int_equal(agent_cmd_run(2, help), 0);
	assert_int_equal(agent_cmd_run(2, stray), 2);
	/* no rackboot.* at all: usage */
	assert_int_equal(run("console=ttyS0\n", NULL, NULL), 2);
	/* a bad override is a usage error too */
	assert_int_equal(run("console=ttyS0\n", "--mac=nope", NULL), 2);
	/* a typo on the kernel command line is a failure */
	assert_int_equal(run("rackboot.sever=http://127.0.0.1:1\n", NULL, NULL), 1);
	/* nobody listening on port 1: the plan cannot be had */
	assert_int_equal(run("rackboot.server=http://127.0.0.1:1 rackboot.mac=52:54:00:00:00:01 "
	                     "rackboot.token=0123456789abcdef0123456789abcdef\n",
	                     NULL, NULL),
	                 1);
	/* overrides fill in what the command line lacks */
	assert_int_equal(run("quiet\n", "--server=http://127.0.0.1:1",
	                     "--token=0123456789abcdef0123456789abcdef"),
	                 2); /* still no MAC */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pick),
		cmocka_unit_test(test_command),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
