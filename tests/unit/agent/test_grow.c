/* Growing the last partition, on disk image files made by sfdisk (util-linux,
 * not ours): the grown GPT is checked byte by byte here (both headers and
 * entry arrays, CRC-32s, backup at the new end, the old backup gone) and by
 * `sfdisk --verify` and `sfdisk --json`; MBR likewise (4Kn GPT needs a loop
 * device: tests/integration/test_agent_run.sh); and every
 * refusal: damaged header or entries, last partition not the highest,
 * extended partition, MBR beyond 2 TiB, no table at all. Skipped without
 * sfdisk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/grow.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

#define MIB (1024ULL * 1024)

static char dir[64];
static char img[128];
static int have_sfdisk;

static int setup(void **state)
{
	(void)state;
	have_sfdisk = system("PATH=$PATH:/usr/sbin:/sbin command -v sfdisk >/dev/null") == 0;
	snprintf(dir, sizeof(dir), "/tmp/rbt-grow.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(img, sizeof(img), "%s/disk.img", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[160];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Makes img: size_mib MiB, partitioned by sfdisk from script, then grown
 * (as a file) to grow_mib. */
static void make_disk(unsigned size_mib, const char *script, unsigned grow_mib)
{
	char cmd[1024];
	FILE *p;

	if (!have_sfdisk)
		skip(); /* util-linux's sfdisk builds the disks */
	unlink(img);
	snprintf(cmd, sizeof(cmd), "truncate -s %uM '%s'", size_mib, img);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin:/sbin sfdisk -q '%s' >/dev/null", img);
	p = popen(cmd, "w");
	assert_non_null(p);
	fputs(script, p);
	assert_int_equal(pclose(p), 0);
	snprintf(cmd, sizeof(cmd), "truncate -s %uM '%s'", grow_mib, img);
	assert_int_equal(system(cmd), 0);
}

static int grow(char *report, size_t replen, char *err, size_t errlen)
{
	report[0] = err[0] = '\0';
	return agent_grow_last_partition(img, report, replen, err, errlen);
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void read_at(uint64_t off, void *buf, size_t len)
{
	int fd = open(img, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(rb_pread_all(fd, buf, len, off), 0);
	close(fd);
}

static void write_at(uint64_t off, const void *buf, size_t len)
{
	int fd = open(img, O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(rb_pwrite_all(fd, buf, len, off), 0);
	close(fd);
}

/* Checks one GPT header at lba and its entries; returns the header. */
static void check_header(uint64_t lba, uint32_t ss, uint64_t want_my, uint64_t want_alt,
                         uint8_t hdr[512], uint8_t **ret_ents)
{
	uint8_t tmp[512];
	uint32_t n, esz;
	uint8_t *ents;

	read_at(lba * ss, hdr, 512);
	assert_memory_equal(hdr, "EFI PART", 8);
	assert_int_equal(rd64(hdr + 24), want_my);
	assert_int_equal(rd64(hdr + 32), want_alt);
	memcpy(tmp, hdr, 512);
	memset(tmp + 16, 0, 4);
	assert_int_equal(agent_crc32(tmp, rd32(hdr + 12)), rd32(hdr + 16));
	n = rd32(hdr + 80);
	esz = rd32(hdr + 84);
	ents = malloc((size_t)n * esz);
	assert_non_null(ents);
	read_at(rd64(hdr + 72) * ss, ents, (size_t)n * esz);
	assert_int_equal(agent_crc32(ents, (size_t)n * esz), rd32(hdr + 88));
	*ret_ents = ents;
}

static void sfdisk_ok(const char *want_json)
{
	char cmd[512], out[4096];
	size_t n;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "PATH=$PATH:/usr/sbin:/sbin sfdisk --verify '%s' 2>&1", img);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	if (pclose(p) != 0 || strstr(out, "No errors detected") == NULL)
		fail_msg("sfdisk --verify: %s", out);
	snprintf(cmd, sizeof(cmd),
	         "PATH=$PATH:/usr/sbin:/sbin sfdisk --json '%s' | tr -d ' \\n' 2>&1", img);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	assert_int_equal(pclose(p), 0);
	if (!strstr(out, want_json))
		fail_msg("sfdisk --json: %s has no %s", out, want_json);
}

static void test_crc32(void **state)
{
	(void)state;
	assert_int_equal(agent_crc32("123456789", 9), 0xcbf43926u);
	assert_int_equal(agent_crc32("", 0), 0);
}

static void test_gpt_roundtrip(void **state)
{
	const uint64_t nlba = 96 * MIB / 512;
	uint8_t p[512], b[512], old[512], *pe, *be;
	char rep[256], err[256];

	(void)state;
	make_disk(32,
	          "label: gpt\nstart=2048, size=16384, type=U, name=esp\n"
	          "start=18432, size=20480, type=L, name=root\n",
	          96);
	read_at(32 * MIB - 512, old, sizeof(old));
	assert_memory_equal(old, "EFI PART", 8); /* the backup sfdisk wrote */
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), 0);
	assert_non_null(strstr(rep, "gpt: partition 2 grown from 20480 to"));

	check_header(1, 512, 1, nlba - 1, p, &pe);
	check_header(nlba - 1, 512, nlba - 1, 1, b, &be);
	assert_int_equal(rd64(p + 48), nlba - 34); /* last usable before 32 entry sectors */
	assert_int_equal(rd64(b + 48), nlba - 34);
	assert_int_equal(rd64(b + 72), nlba - 33);
	assert_int_equal(rd64(p + 72), 2);
	assert_memory_equal(pe, be, 128 * 128);
	assert_int_equal(rd64(pe + 128 + 32), 18432);      /* start kept */
	assert_int_equal(rd64(pe + 128 + 40), nlba - 34);  /* end at last usable */
	assert_int_equal(rd64(pe + 40), 2048 + 16384 - 1); /* partition 1 untouched */
	assert_memory_equal(p + 56, b + 56, 16);           /* same disk GUID */
	read_at(32 * MIB - 512, old, sizeof(old));
	assert_memory_not_equal(old, "EFI PART", 8); /* old backup gone */
	{
		uint8_t mbr[512];

		read_at(0, mbr, sizeof(mbr));
		assert_int_equal(mbr[446 + 4], 0xee);
		assert_int_equal(rd32(mbr + 446 + 12),
		                 nlba - 1); /* protective MBR covers the disk */
	}
	free(pe);
	free(be);
	sfdisk_ok("\"start\":18432,\"size\":178143");

	/* again: nothing to do, nothing changed */
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), 0);
	assert_non_null(strstr(rep, "already ends at the end"));
	sfdisk_ok("\"start\":18432,\"size\":178143");
}

static void test_mbr_roundtrip(void **state)
{
	uint8_t mbr[512];
	char rep[256], err[256];

	(void)state;
	make_disk(32,
	          "label: dos\nstart=2048, size=8192, type=83, bootable\n"
	          "start=10240, size=20480, type=83\n",
	          80);
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), 0);
	assert_string_equal(rep, "mbr: partition 2 grown from 20480 to 153600 sectors");
	read_at(0, mbr, sizeof(mbr));
	assert_int_equal(rd32(mbr + 446 + 16 + 8), 10240);
	assert_int_equal(rd32(mbr + 446 + 16 + 12), 80 * MIB / 512 - 10240);
	assert_int_equal(mbr[446], 0x80); /* the boot flag of partition 1 kept */
	sfdisk_ok("\"start\":10240,\"size\":153600");
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), 0);
	assert_non_null(strstr(rep, "already ends"));
}

static void test_refusals(void **state)
{
	uint8_t before[4096], after[4096], b;
	char rep[256], err[256];

	(void)state;
	/* partition 2 lies before partition 1 on the disk */
	make_disk(32, "label: gpt\nstart=20480, size=8192, type=L\nstart=2048, size=8192, type=L\n",
	          64);
	read_at(0, before, sizeof(before));
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "last GPT partition (2) is not the one that ends highest"));
	read_at(0, after, sizeof(after));
	assert_memory_equal(before, after, sizeof(before)); /* nothing written */

	/* damaged header and damaged entries */
	make_disk(32, "label: gpt\nstart=2048, size=8192, type=L\n", 64);
	read_at(512 + 40, &b, 1);
	b ^= 1;
	write_at(512 + 40, &b, 1);
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "header CRC-32"));
	make_disk(32, "label: gpt\nstart=2048, size=8192, type=L\n", 64);
	read_at(1024 + 56, &b, 1);
	b ^= 0x40;
	write_at(1024 + 56, &b, 1);
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "entries CRC-32"));
	/* protective MBR without a GPT header */
	make_disk(32, "label: gpt\nstart=2048, size=8192, type=L\n", 64);
	memset(before, 0, 512);
	write_at(512, before, 512);
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "primary GPT damaged"));

	/* MBR: extended last, out-of-order, > 2 TiB, bad boot flag */
	make_disk(32, "label: dos\nstart=2048, size=8192, type=83\nstart=10240, type=5\n", 64);
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "extended partition"));
	make_disk(32,
	          "label: dos\nstart=20480, size=8192, type=83\nstart=2048, size=8192, type=83\n",
	          64);
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not the one that ends highest"));
	{
		int fd = open(img, O_RDWR);

		assert_true(fd >= 0);
		assert_int_equal(
		        agent_grow_fd(fd, 3ULL << 40, 512, rep, sizeof(rep), err, sizeof(err)),
		        -EINVAL);
		assert_non_null(strstr(err, "2^32"));
		b = 0x12;
		assert_int_equal(rb_pwrite_all(fd, &b, 1, 446), 0);
		assert_int_equal(
		        agent_grow_fd(fd, 64 * MIB, 512, rep, sizeof(rep), err, sizeof(err)),
		        -EBADMSG);
		assert_non_null(strstr(err, "boot flag"));
		/* a sector size that is not a power of two */
		assert_int_equal(
		        agent_grow_fd(fd, 64 * MIB, 1000, rep, sizeof(rep), err, sizeof(err)),
		        -EINVAL);
		close(fd);
	}

	/* GPT claiming a larger disk than the file (image bigger than the disk) */
	make_disk(64, "label: gpt\nstart=2048, size=8192, type=L\n", 32);
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "smaller than the table"));

	/* no table */
	unlink(img);
	{
		int fd = open(img, O_RDWR | O_CREAT, 0644);

		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 8 * MIB), 0);
		close(fd);
	}
	assert_int_equal(grow(rep, sizeof(rep), err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no partition table"));
	/* missing file names it */
	unlink(img);
	assert_true(grow(rep, sizeof(rep), err, sizeof(err)) < 0);
	assert_non_null(strstr(err, img));
}

static void test_command(void **state)
{
	char *argv_help[] = { "grow", "--help", NULL };
	char *argv_none[] = { "grow", NULL };
	char *argv_two[] = { "grow", "a", "b", NULL };
	char *argv_missing[] = { "grow", "/nonexistent/rackboot-disk", NULL };

	(void)state;
	assert_int_equal(agent_cmd_grow(2, argv_help), 0);
	assert_int_equal(agent_cmd_grow(1, argv_none), 2);
	assert_int_equal(agent_cmd_grow(3, argv_two), 2);
	assert_int_equal(agent_cmd_grow(2, argv_missing), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32),         cmocka_unit_test(test_gpt_roundtrip),
		cmocka_unit_test(test_mbr_roundtrip), cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_command),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
