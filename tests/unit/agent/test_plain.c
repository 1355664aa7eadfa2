/* The pure parts of plain images and rootfs tarballs: catalogue kinds,
 * repository URLs, zero detection, Content-Range, GPT entries as sfdisk
 * writes them, partitions found in a sysfs tree, and running a tool (a
 * real fork/exec of /bin/sh: exit status, stderr, stdin, a missing tool).
 * The transfers, the writer and the rootfs steps are covered by
 * tests/integration/test_agent_plain.sh against the real rackbootd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "agent/plain.h"
#include "agent/rootfs.h"
#include "agent/stream.h"

static void test_kind(void **state)
{
	static const struct {
		const char *kind;
		int ret;
		bool tar;
		enum agent_plain_filter f;
	} v[] = {
		{ "raw", 0, false, AGENT_PLAIN_NONE },
		{ "raw.gz", 0, false, AGENT_PLAIN_GZIP },
		{ "raw.xz", 0, false, AGENT_PLAIN_XZ },
		{ "raw.zst", 0, false, AGENT_PLAIN_ZSTD },
		{ "tar", 0, true, AGENT_PLAIN_NONE },
		{ "tar.gz", 0, true, AGENT_PLAIN_GZIP },
		{ "tar.xz", 0, true, AGENT_PLAIN_XZ },
		{ "tar.zst", 0, true, AGENT_PLAIN_ZSTD },
		{ "raw.bz2", -EINVAL, false, 0 },
		{ "tar.zstd", -EINVAL, false, 0 },
		{ "", -EINVAL, false, 0 },
		{ "RAW", -EINVAL, false, 0 },
		{ "qcow2", -EINVAL, false, 0 },
		{ "raw ", -EINVAL, false, 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		bool tar = !v[i].tar;
		enum agent_plain_filter f = 99;

		assert_int_equal(agent_plain_kind_parse(v[i].kind, &tar, &f), v[i].ret);
		if (v[i].ret == 0) {
			assert_int_equal(tar, v[i].tar);
			assert_int_equal(f, v[i].f);
		}
	}
	assert_int_equal(
	        agent_plain_kind_parse(NULL, &(bool){ false }, &(enum agent_plain_filter){ 0 }),
	        -EINVAL);
}

static void test_url_join(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(agent_url_join("http://h/repo", "plain/a.img.zst", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "http://h/repo/plain/a.img.zst");
	assert_int_equal(agent_url_join("http://h/repo///", "catalog.json", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "http://h/repo/catalog.json");
	assert_int_equal(agent_url_join("http://h", "plain/a b#c?d%e+f~g", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "http://h/plain/a%20b%23c%3Fd%25e+f~g");
	assert_int_equal(agent_url_join("http://h", "plain/\xc3\xa9", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "http://h/plain/%C3%A9");
	/* exactly fitting and one byte short */
	assert_int_equal(agent_url_join("http://h", "abc", buf, 13), 0);
	assert_string_equal(buf, "http://h/abc");
	assert_int_equal(agent_url_join("http://h", "abc", buf, 12), -ENAMETOOLONG);
	assert_int_equal(agent_url_join("http://h", " ", buf, 12), -ENAMETOOLONG);
	assert_int_equal(agent_url_join("http://h", " ", buf, 13), 0);
	assert_string_equal(buf, "http://h/%20");
}

static void test_is_zero(void **state)
{
	size_t n = 1 << 20;
	uint8_t *b = calloc(1, n);

	(void)state;
	assert_non_null(b);
	assert_true(agent_is_zero(b, 0));
	assert_true(agent_is_zero(b, 1));
	assert_true(agent_is_zero(b, n));
	b[n - 1] = 1;
	assert_false(agent_is_zero(b, n));
	assert_true(agent_is_zero(b, n - 1));
	b[n - 1] = 0;
	b[0] = 0x80;
	assert_false(agent_is_zero(b, n));
	assert_false(agent_is_zero(b, 1));
	assert_true(agent_is_zero(b + 1, n - 1));
	b[0] = 0;
	b[n / 2] = 0xff;
	assert_false(agent_is_zero(b, n));
	free(b);
}

/* The head of a raw kind's data, after its one decompression: what is
 * refused before the target is touched, and what the reason says. */
static void test_check_head(void **state)
{
	static const struct {
		const char *what;
		size_t off;
		const char *bytes;
		size_t len;
		int ret;
		const char *msg; /* substring of the reason */
	} v[] = {
		{ "qcow2 v3", 0, "QFI\xfb\0\0\0\3", 8, -EINVAL, "qemu-img convert -f qcow2" },
		{ "qcow2 magic on a GPT disk", 0, "QFI\xfb", 4, -EINVAL, "qcow2 image" },
		{ "vmdk sparse", 0, "KDMV", 4, -EINVAL, "VMDK image" },
		{ "vmdk3 sparse", 0, "COWD", 4, -EINVAL, "VMDK image" },
		{ "vmdk descriptor", 0, "# Disk DescriptorFile\nversion=1\n", 32, -EINVAL,
		  "VMDK image" },
		{ "vmdk descriptor, other comment", 0,
		  "# x\nversion=2\nRW 1 FLAT \"/etc/shadow\" 0\n", 41, -EINVAL, "VMDK image" },
		{ "vhdx", 0, "vhdxfile", 8, -EINVAL, "VHDX image" },
		{ "zstd inside", 0, "\x28\xb5\x2f\xfd", 4, -EINVAL, "the data inside is zstd" },
		{ "gzip inside", 0, "\x1f\x8b\x08", 3, -EINVAL, "the data inside is gzip" },
		{ "xz inside", 0, "\xfd\x37\x7a\x58\x5a\x00", 6, -EINVAL, "the data inside is xz" },
		{ "tar inside", 257,
		  "ustar\0"
		  "00",
		  8, -EINVAL, "the data inside is tar" },
		{ "bzip2 inside", 0, "BZh9", 4, -EINVAL, "bzip2" },
		{ "GPT disk", 512, "EFI PART", 8, 0, NULL },
		{ "MBR disk", 510, "\x55\xaa", 2, 0, NULL },
		{ "zeros (a filesystem image)", 0, "", 0, 0, NULL },
	};
	static uint8_t head[8192];
	char err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		int r;

		memset(head, 0, sizeof(head));
		memcpy(head + v[i].off, v[i].bytes, v[i].len);
		err[0] = '\0';
		/* more than IMG_DETECT_HEAD bytes: only the head is looked at */
		r = agent_plain_check_head(head, sizeof(head), "http://r/plain/x", "raw.zst", err,
		                           sizeof(err));
		if (r != v[i].ret)
			fail_msg("%s: got %d (%s), expected %d", v[i].what, r, err, v[i].ret);
		if (v[i].msg && (!strstr(err, v[i].msg) || !strstr(err, "http://r/plain/x") ||
		                 !strstr(err, "raw.zst") || !strstr(err, "nothing was written")))
			fail_msg("%s: reason \"%s\" lacks \"%s\", the URL, the kind or "
			         "\"nothing was written\"",
			         v[i].what, err, v[i].msg);
	}
	/* a short head (an image under 4 KiB) is read within its length */
	{
		uint8_t *exact = malloc(4);

		assert_non_null(exact);
		memcpy(exact, "QFI\xfb", 4);
		assert_int_equal(agent_plain_check_head(exact, 4, "u", "raw", err, sizeof(err)),
		                 -EINVAL);
		memcpy(exact, "abcd", 4);
		assert_int_equal(agent_plain_check_head(exact, 4, "u", "raw", err, sizeof(err)), 0);
		free(exact);
	}
}

static void test_content_range(void **state)
{
	static const struct {
		const char *v;
		int ret;
		uint64_t a, b, t;
	} v[] = {
		{ "bytes 0-99/100", 0, 0, 99, 100 },
		{ " bytes 100-199/1000\r\n", 0, 100, 199, 1000 },
		{ "BYTES 5-5/6", 0, 5, 5, 6 },
		{ "bytes 7-9/*", 0, 7, 9, UINT64_MAX },
		{ "bytes 18446744073709551614-18446744073709551614/18446744073709551615", 0,
		  UINT64_MAX - 1, UINT64_MAX - 1, UINT64_MAX },
		{ "bytes 0-99/99", -EINVAL, 0, 0, 0 },                  /* end beyond total */
		{ "bytes 9-5/100", -EINVAL, 0, 0, 0 },                  /* end before start */
		{ "bytes */100", -EINVAL, 0, 0, 0 },                    /* a 416's form */
		{ "bytes 1-2/3x", -EINVAL, 0, 0, 0 },                   /* trailing junk */
		{ "items 1-2/3", -EINVAL, 0, 0, 0 },                    /* other unit */
		{ "bytes -1-2/3", -EINVAL, 0, 0, 0 },                   /* sign */
		{ "bytes 1-2", -EINVAL, 0, 0, 0 },                      /* no total */
		{ "bytes 99999999999999999999-1/2", -EINVAL, 0, 0, 0 }, /* overflow */
		{ "", -EINVAL, 0, 0, 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint64_t a = 1, b = 2, t = 3;

		assert_int_equal(agent_content_range_parse(v[i].v, &a, &b, &t), v[i].ret);
		if (v[i].ret == 0) {
			assert_true(a == v[i].a);
			assert_true(b == v[i].b);
			assert_true(t == v[i].t);
		}
	}
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A GPT as sfdisk writes it: header at LBA 1, 128 entries of 128 bytes at
 * LBA 2. */
static void make_gpt(uint8_t *d, unsigned lbs)
{
	uint8_t *h = d + lbs, *e = d + 2 * lbs;

	memcpy(h, "EFI PART", 8);
	put_le64(h + 72, 2);
	put_le64(h + 80, 128 | (128ULL << 32)); /* entries, entry size */
	put_le64(e + 32, 2048);
	put_le64(e + 40, 526335);
	put_le64(e + 128 + 32, 526336);
	put_le64(e + 128 + 40, 1226751);
}

static void test_gpt_entry(void **state)
{
	size_t len = 1 << 20;
	uint8_t *d = calloc(1, len);
	uint64_t a, b;

	(void)state;
	assert_non_null(d);
	assert_int_equal(agent_gpt_entry(d, len, 512, 0, &a, &b), -EINVAL); /* no GPT */
	make_gpt(d, 512);
	assert_int_equal(agent_gpt_entry(d, len, 512, 0, &a, &b), 0);
	assert_true(a == 2048 && b == 526335);
	assert_int_equal(agent_gpt_entry(d, len, 512, 1, &a, &b), 0);
	assert_true(a == 526336 && b == 1226751);
	assert_int_equal(agent_gpt_entry(d, len, 512, 2, &a, &b), -ENOENT);   /* unused */
	assert_int_equal(agent_gpt_entry(d, len, 512, 128, &a, &b), -EINVAL); /* past n */
	/* the entries must lie inside what was read */
	assert_int_equal(agent_gpt_entry(d, 2 * 512 + 200, 512, 1, &a, &b), -EINVAL);
	assert_int_equal(agent_gpt_entry(d, 2 * 512 + 256, 512, 1, &a, &b), 0);
	/* the header is read at LBA 1 of the given size */
	assert_int_equal(agent_gpt_entry(d, len, 4096, 0, &a, &b), -EINVAL);
	memset(d, 0, len);
	make_gpt(d, 4096);
	assert_int_equal(agent_gpt_entry(d, len, 4096, 1, &a, &b), 0);
	assert_true(a == 526336);
	/* an entry size below 128 is refused */
	put_le64(d + 4096 + 80, 128 | (64ULL << 32));
	assert_int_equal(agent_gpt_entry(d, len, 4096, 0, &a, &b), -EINVAL);
	/* last before first: not a usable entry */
	make_gpt(d, 4096);
	put_le64(d + 2 * 4096 + 40, 10);
	assert_int_equal(agent_gpt_entry(d, len, 4096, 0, &a, &b), -ENOENT);
	free(d);
}

static char sys[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void mkpart(const char *disk, const char *name, const char *no, const char *dev,
                   const char *start, const char *size)
{
	char p[256];

	snprintf(p, sizeof(p), "%s/dev/block/%s/%s", sys, disk, name);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/dev/block/%s/%s/partition", sys, disk, name);
	write_file(p, no);
	snprintf(p, sizeof(p), "%s/dev/block/%s/%s/dev", sys, disk, name);
	write_file(p, dev);
	snprintf(p, sizeof(p), "%s/dev/block/%s/%s/start", sys, disk, name);
	write_file(p, start);
	snprintf(p, sizeof(p), "%s/dev/block/%s/%s/size", sys, disk, name);
	write_file(p, size);
}

static void test_sysfs_partition(void **state)
{
	char p[256];
	struct agent_part part;

	(void)state;
	snprintf(sys, sizeof(sys), "/tmp/rbt-sysfs.XXXXXX");
	assert_non_null(mkdtemp(sys));
	snprintf(p, sizeof(p), "%s/dev", sys);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/dev/block", sys);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/dev/block/259:3", sys);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/dev/block/259:3/queue", sys); /* not a partition */
	assert_int_equal(mkdir(p, 0755), 0);
	mkpart("259:3", "nvme0n1p1", "1\n", "259:4\n", "2048\n", "524288\n");
	mkpart("259:3", "nvme0n1p2", "2\n", "259:5\n", "526336\n", "700416\n");
	mkpart("259:3", "nvme0n1p12", "12\n", "259:6\n", "bad\n", "1\n");

	assert_int_equal(agent_sysfs_partition(sys, makedev(259, 3), 2, &part), 0);
	assert_string_equal(part.name, "nvme0n1p2");
	assert_true(part.dev == makedev(259, 5));
	assert_true(part.start == 526336 && part.len == 700416);
	assert_int_equal(agent_sysfs_partition(sys, makedev(259, 3), 1, &part), 0);
	assert_string_equal(part.name, "nvme0n1p1");
	assert_int_equal(agent_sysfs_partition(sys, makedev(259, 3), 3, &part), -ENOENT);
	assert_int_equal(agent_sysfs_partition(sys, makedev(259, 3), 12, &part), -ENOENT);
	assert_int_equal(agent_sysfs_partition(sys, makedev(8, 0), 1, &part), -ENOENT);
	assert_int_equal(nftw(sys, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static void test_tool_run(void **state)
{
	const char *ok[] = { "sh", "-c", "read x && [ \"$x\" = hello ] && echo fine >&2", NULL };
	const char *fail[] = { "sh", "-c", "echo first >&2; echo 'second line' >&2; exit 3", NULL };
	const char *loud[] = { "sh", "-c",
		               "i=0; while [ $i -lt 500 ]; do echo noise $i >&2; i=$((i+1)); "
		               "done; echo 'the real error' >&2; exit 1",
		               NULL };
	const char *gone[] = { "rackboot-no-such-tool", "x", NULL };
	const char *early[] = { "sh", "-c", "exec 0<&-; exit 4", NULL };
	char err[512] = "";
	char big[100000];

	(void)state;
	assert_int_equal(agent_tool_run(ok, "hello\n", err, sizeof(err)), 0);
	assert_int_equal(agent_tool_run(ok, "other\n", err, sizeof(err)), -EIO);
	assert_string_equal(err, "sh failed (exit 1): (no message)");
	assert_int_equal(agent_tool_run(fail, NULL, err, sizeof(err)), -EIO);
	assert_string_equal(err, "sh failed (exit 3): first|second line");
	assert_int_equal(agent_tool_run(loud, NULL, err, sizeof(err)), -EIO);
	assert_non_null(strstr(err, "the real error"));
	assert_int_equal(agent_tool_run(gone, NULL, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "rackboot-no-such-tool"));
	assert_non_null(strstr(err, "not found in PATH"));
	/* a tool that closes its stdin at once: no SIGPIPE for us */
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(agent_tool_run(early, big, err, sizeof(err)), -EIO);
	assert_string_equal(err, "sh failed (exit 4): (no message)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kind),      cmocka_unit_test(test_url_join),
		cmocka_unit_test(test_is_zero),   cmocka_unit_test(test_content_range),
		cmocka_unit_test(test_gpt_entry), cmocka_unit_test(test_sysfs_partition),
		cmocka_unit_test(test_tool_run),  cmocka_unit_test(test_check_head),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
