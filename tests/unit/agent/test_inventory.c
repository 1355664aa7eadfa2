/* Hardware inventory against the fixture trees of tests/data/inventory
 * (made by make_fixtures.py): a DGX H100-like GPU node, a one-socket box and
 * a hostile tree of garbage, loops and escapes; plus a FIFO and a /dev/zero
 * link planted at run time, and the command's options and exit codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/inventory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXTURE(name) RB_DATADIR "/inventory/" name

static json_t *collect(const char *root, unsigned flags)
{
	json_t *doc = NULL;

	assert_int_equal(agent_inventory_collect(root, flags, &doc), 0);
	assert_non_null(doc);
	return doc;
}

static json_t *path(json_t *doc, const char *a, const char *b)
{
	json_t *o = json_object_get(doc, a);

	assert_non_null(o);
	o = json_object_get(o, b);
	assert_non_null(o);
	return o;
}

static long long int_at(json_t *doc, const char *a, const char *b)
{
	json_t *v = path(doc, a, b);

	assert_true(json_is_integer(v));
	return json_integer_value(v);
}

static const char *str_at(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	assert_true(json_is_string(v));
	return json_string_value(v);
}

static void assert_null_at(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	assert_non_null(v); /* present, and null */
	assert_true(json_is_null(v));
}

static json_t *find(json_t *arr, const char *key, const char *val)
{
	size_t i;
	json_t *e;

	json_array_foreach(arr, i, e)
	{
		json_t *v = json_object_get(e, key);

		if (json_is_string(v) && !strcmp(json_string_value(v), val))
			return e;
	}
	fail_msg("no entry with %s=%s", key, val);
	return NULL;
}

/* The document survives a dump and a strict parse, as the server will see it. */
static void assert_round_trips(json_t *doc)
{
	char *s = json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_error_t err;
	json_t *back;

	assert_non_null(s);
	back = json_loads(s, JSON_REJECT_DUPLICATES, &err);
	assert_non_null(back);
	assert_true(json_equal(doc, back));
	json_decref(back);
	free(s);
}

static void test_dgx(void **state)
{
	json_t *doc = collect(FIXTURE("dgx"), 0), *disks, *nics, *gpus, *hcas, *e;
	size_t i;

	assert_true(json_is_true(json_object_get(doc, "uefi")));
	assert_string_equal(str_at(json_object_get(doc, "dmi"), "sys_vendor"), "NVIDIA");
	assert_string_equal(str_at(json_object_get(doc, "dmi"), "product_name"), "DGXH100");
	assert_string_equal(str_at(json_object_get(doc, "dmi"), "product_serial"), "1660223000123");
	assert_string_equal(str_at(json_object_get(doc, "dmi"), "board_serial"), "1653123000456");
	assert_string_equal(str_at(json_object_get(doc, "dmi"), "bios_version"), "01.00.03");

	assert_string_equal(str_at(json_object_get(doc, "cpu"), "model"),
	                    "Intel(R) Xeon(R) Platinum 8480CL");
	assert_int_equal(int_at(doc, "cpu", "sockets"), 2);
	assert_int_equal(int_at(doc, "cpu", "cores"), 112);
	assert_int_equal(int_at(doc, "cpu", "threads"), 224);
	assert_int_equal(int_at(doc, "memory", "total_bytes"), 2113442580LL * 1024);

	/* loop0 left out; version order puts nvme before sda */
	disks = json_object_get(doc, "disks");
	assert_int_equal(json_array_size(disks), 3);
	assert_string_equal(str_at(json_array_get(disks, 0), "name"), "nvme0n1");
	e = find(disks, "name", "nvme1n1");
	assert_int_equal(json_integer_value(json_object_get(e, "size_bytes")), 7501476528LL * 512);
	assert_string_equal(str_at(e, "serial"), "S64HNE0T501123");
	assert_string_equal(str_at(e, "model"), "SAMSUNG MZQL23T8HCLS-00A07");
	assert_true(json_is_false(json_object_get(e, "rotational")));
	e = find(disks, "name", "sda");
	assert_string_equal(str_at(e, "serial"), "WKD0ABCD"); /* from vpd_pg80 */
	assert_string_equal(str_at(e, "vendor"), "ATA");
	assert_true(json_is_true(json_object_get(e, "rotational")));
	assert_true(json_is_false(json_object_get(e, "removable")));
	assert_int_equal(json_integer_value(json_object_get(e, "size_bytes")), 15628053168LL * 512);

	/* lo and docker0 left out */
	nics = json_object_get(doc, "nics");
	assert_int_equal(json_array_size(nics), 6);
	e = find(nics, "name", "eno1");
	assert_string_equal(str_at(e, "mac"), "7c:c2:55:12:34:56"); /* lower-cased */
	assert_int_equal(json_integer_value(json_object_get(e, "speed_mbps")), 25000);
	assert_string_equal(str_at(e, "driver"), "i40e");
	assert_string_equal(str_at(e, "bus_id"), "0000:4b:00.0");
	assert_string_equal(str_at(e, "type"), "ethernet");
	assert_true(json_is_true(json_object_get(e, "carrier")));
	e = find(nics, "name", "ibp26s0");
	assert_string_equal(str_at(e, "type"), "infiniband");
	assert_int_equal(json_integer_value(json_object_get(e, "speed_mbps")), 400000);
	assert_string_equal(str_at(e, "mac"),
	                    "00:00:10:49:fe:80:00:00:00:00:00:00:a0:88:c2:03:00:1e:8b:00");

	/* 8 H100s; the 4 NVSwitches (0x0680) and the ASPEED VGA are not GPUs */
	gpus = json_object_get(doc, "gpus");
	assert_int_equal(json_array_size(gpus), 8);
	assert_string_equal(str_at(json_array_get(gpus, 0), "address"), "0000:18:00.0");
	json_array_foreach(gpus, i, e)
	{
		assert_string_equal(str_at(e, "vendor"), "0x10de");
		assert_string_equal(str_at(e, "device"), "0x2330");
		assert_string_equal(str_at(e, "class"), "0x030200");
		assert_string_equal(str_at(e, "driver"), "nvidia");
		assert_int_equal(json_integer_value(json_object_get(e, "numa_node")),
		                 i < 4 ? 0 : 1);
	}
	hcas = json_object_get(doc, "ib_hcas");
	assert_int_equal(json_array_size(hcas), 4);
	e = find(hcas, "address", "0000:9c:00.0");
	assert_string_equal(str_at(e, "device"), "0x1021");
	assert_string_equal(str_at(e, "ib_device"), "mlx5_2");
	assert_string_equal(str_at(e, "subsystem_device"), "0x0041");
	e = find(json_object_get(doc, "pci"), "address", "0000:05:00.0");
	assert_string_equal(str_at(e, "class"), "0x068000");
	e = find(json_object_get(doc, "pci"), "address", "0000:00:00.0");
	assert_null_at(e, "driver");

	assert_int_equal(int_at(doc, "counts", "gpus"), 8);
	assert_int_equal(int_at(doc, "counts", "ib_hcas"), 4);
	assert_int_equal(int_at(doc, "counts", "pci"), 23);
	assert_int_equal(int_at(doc, "counts", "disks"), 3);
	assert_int_equal(int_at(doc, "counts", "nics"), 6);
	assert_round_trips(doc);
	json_decref(doc);
}

static void test_commodity(void **state)
{
	json_t *doc = collect(FIXTURE("commodity"), 0), *e;

	assert_true(json_is_false(json_object_get(doc, "uefi")));
	assert_int_equal(int_at(doc, "cpu", "sockets"), 1);
	assert_int_equal(int_at(doc, "cpu", "cores"), 6);
	assert_int_equal(int_at(doc, "cpu", "threads"), 6);
	assert_int_equal(int_at(doc, "memory", "total_bytes"), 16303132LL * 1024);
	assert_null_at(json_object_get(doc, "dmi"), "product_serial");
	assert_string_equal(str_at(json_object_get(doc, "dmi"), "sys_vendor"), "Dell Inc.");

	/* loop0, zram0 and sr0 left out */
	assert_int_equal(json_array_size(json_object_get(doc, "disks")), 1);
	e = json_array_get(json_object_get(doc, "disks"), 0);
	assert_string_equal(str_at(e, "name"), "sda");
	assert_string_equal(str_at(e, "serial"), "50026B7782A1B2C3");
	assert_true(json_is_false(json_object_get(e, "rotational")));

	/* link down: speed -1 is null, carrier false */
	assert_int_equal(json_array_size(json_object_get(doc, "nics")), 1);
	e = json_array_get(json_object_get(doc, "nics"), 0);
	assert_string_equal(str_at(e, "name"), "enp1s0");
	assert_null_at(e, "speed_mbps");
	assert_true(json_is_false(json_object_get(e, "carrier")));
	assert_string_equal(str_at(e, "driver"), "r8169");

	/* an Intel iGPU is a display device, but not a GPU for us */
	assert_int_equal(int_at(doc, "counts", "gpus"), 0);
	assert_int_equal(int_at(doc, "counts", "ib_hcas"), 0);
	e = find(json_object_get(doc, "pci"), "address", "0000:00:02.0");
	assert_string_equal(str_at(e, "class"), "0x030000");
	assert_null_at(e, "numa_node"); /* -1 */
	assert_round_trips(doc);
	json_decref(doc);
}

static void test_all_disks(void **state)
{
	json_t *doc = collect(FIXTURE("commodity"), AGENT_INV_ALL_DISKS), *disks;

	disks = json_object_get(doc, "disks");
	assert_int_equal(json_array_size(disks), 4);
	find(disks, "name", "loop0");
	find(disks, "name", "sr0");
	assert_true(json_is_true(json_object_get(find(disks, "name", "sr0"), "removable")));
	assert_int_equal(
	        json_integer_value(json_object_get(find(disks, "name", "zram0"), "size_bytes")),
	        8388608LL * 512);
	json_decref(doc);
}

static void test_hostile(void **state)
{
	json_t *doc = collect(FIXTURE("hostile"), 0), *dmi, *disks, *e;
	const char *s;

	assert_round_trips(doc);
	assert_true(json_is_false(json_object_get(doc, "uefi"))); /* efi is a loop */

	/* escaped, cut at the NUL, bounded; escapes out of the root refused */
	dmi = json_object_get(doc, "dmi");
	assert_string_equal(str_at(dmi, "sys_vendor"), "Evil\\x22Corp\\x5c\\x1b[31m\\xff\\xfe");
	assert_null_at(dmi, "product_name");
	assert_null_at(dmi, "product_serial");
	assert_null_at(dmi, "board_serial");
	assert_true(strlen(str_at(dmi, "bios_version")) <= 256);

	/* 100 kB model line cut; bad ids ignored: processors 2 and 3 share
	 * package 3 with cores 1 and 7 */
	s = str_at(json_object_get(doc, "cpu"), "model");
	assert_true(strlen(s) <= 256 && s[0] == 'A');
	assert_int_equal(int_at(doc, "cpu", "threads"), 4);
	assert_int_equal(int_at(doc, "cpu", "sockets"), 1);
	assert_int_equal(int_at(doc, "cpu", "cores"), 2);
	assert_null_at(json_object_get(doc, "memory"), "total_bytes");

	/* sdz (loop), sdv (absolute), sdu (escape), sdw (a file) left out */
	disks = json_object_get(doc, "disks");
	assert_int_equal(json_array_size(disks), 2);
	e = find(disks, "name", "sdx");
	assert_null_at(e, "size_bytes"); /* 2^70 sectors */
	assert_string_equal(str_at(e, "model"), "\\x01\\xffMODEL\\x1b\\x22");
	assert_null_at(e, "serial"); /* vpd length past the end */
	assert_null_at(e, "rotational");
	assert_null_at(e, "removable");
	e = find(disks, "name", "sdy");
	assert_null_at(e, "size_bytes"); /* -5 */
	assert_null_at(e, "serial");     /* NULs only */
	assert_null_at(e, "rotational"); /* a directory */

	/* eth1 (device link loop) and eth2 (absolute device link) left out */
	assert_int_equal(json_array_size(json_object_get(doc, "nics")), 1);
	e = find(json_object_get(doc, "nics"), "name", "eth0");
	assert_null_at(e, "mac");
	assert_null_at(e, "speed_mbps"); /* 4294967295 */
	assert_null_at(e, "carrier");
	assert_null_at(e, "type");

	/* non-hex vendor, overlong class, junk vendor: none is a GPU or HCA;
	 * "10de"/"030200" without 0x still parse */
	e = find(json_object_get(doc, "pci"), "address", "0000:00:01.0");
	assert_null_at(e, "vendor");
	assert_null_at(e, "numa_node");
	e = find(json_object_get(doc, "pci"), "address", "0000:00:02.0");
	assert_null_at(e, "class");
	e = find(json_object_get(doc, "pci"), "address", "0000:00:04.0");
	assert_null_at(e, "vendor");
	assert_null_at(e, "ib_device"); /* infiniband/ is a loop */
	e = find(json_object_get(doc, "pci"), "address", "0000:00:05.0");
	assert_null_at(e, "device");
	assert_int_equal(int_at(doc, "counts", "pci"), 5); /* 0000:00:06.0 is a loop */
	assert_int_equal(int_at(doc, "counts", "gpus"), 1);
	assert_string_equal(str_at(json_array_get(json_object_get(doc, "gpus"), 0), "address"),
	                    "0000:00:03.0");
	assert_int_equal(int_at(doc, "counts", "ib_hcas"), 0);
	json_decref(doc);
}

/* A FIFO must not block the read, nor a link to /dev/zero feed it forever. */
static void test_special_files(void **state)
{
	char root[] = "/tmp/rb-inv-XXXXXX", p[256];
	json_t *doc;

	assert_non_null(mkdtemp(root));
	snprintf(p, sizeof(p), "%s/proc", root);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/proc/meminfo", root);
	assert_int_equal(mkfifo(p, 0644), 0);
	snprintf(p, sizeof(p), "%s/proc/cpuinfo", root);
	assert_int_equal(symlink("/dev/zero", p), 0);

	doc = collect(root, 0);
	assert_null_at(json_object_get(doc, "memory"), "total_bytes");
	assert_null_at(json_object_get(doc, "cpu"), "threads");
	assert_null_at(json_object_get(doc, "cpu"), "sockets");
	assert_int_equal(json_array_size(json_object_get(doc, "disks")), 0);
	assert_int_equal(int_at(doc, "counts", "pci"), 0);
	json_decref(doc);

	unlink(p);
	snprintf(p, sizeof(p), "%s/proc/meminfo", root);
	unlink(p);
	snprintf(p, sizeof(p), "%s/proc", root);
	rmdir(p);
	rmdir(root);
}

static void test_missing_root(void **state)
{
	json_t *doc = NULL;

	assert_int_equal(agent_inventory_collect(FIXTURE("nonexistent"), 0, &doc), -ENOENT);
	assert_null(doc);
	assert_int_equal(agent_inventory_collect(FIXTURE("make_fixtures.py"), 0, &doc), -ENOTDIR);
	assert_null(doc);
}

static int run(char **argv, int argc, char **ret_out)
{
	size_t len = 0;
	FILE *f;
	int rc;

	*ret_out = NULL;
	f = open_memstream(ret_out, &len);
	assert_non_null(f);
	rc = agent_inventory_run(argc, argv, f);
	fclose(f);
	return rc;
}

static void test_command(void **state)
{
	char *a1[] = { "inventory", "--root", FIXTURE("dgx"), "--pretty" };
	char *a2[] = { "inventory", "--root=" FIXTURE("commodity"), "--all-disks" };
	char *a3[] = { "inventory", "--root", FIXTURE("nonexistent") };
	char *a4[] = { "inventory", "--bogus" };
	char *a5[] = { "inventory", "--root" };
	json_error_t err;
	json_t *doc;
	char *out;

	assert_int_equal(run(a1, 4, &out), 0);
	assert_non_null(strstr(out, "\n  \"uefi\": true,\n")); /* indented */
	doc = json_loads(out, 0, &err);
	assert_non_null(doc);
	assert_int_equal(int_at(doc, "counts", "gpus"), 8);
	json_decref(doc);
	free(out);

	assert_int_equal(run(a2, 3, &out), 0);
	assert_null(strstr(out, "\n ")); /* compact */
	doc = json_loads(out, 0, &err);
	assert_non_null(doc);
	assert_int_equal(int_at(doc, "counts", "disks"), 4);
	json_decref(doc);
	free(out);

	assert_int_equal(run(a3, 3, &out), 1);
	assert_string_equal(out, "");
	free(out);
	assert_int_equal(run(a4, 2, &out), 2);
	free(out);
	assert_int_equal(run(a5, 2, &out), 2);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dgx),           cmocka_unit_test(test_commodity),
		cmocka_unit_test(test_all_disks),     cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_special_files), cmocka_unit_test(test_missing_root),
		cmocka_unit_test(test_command),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
