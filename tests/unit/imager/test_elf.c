/* imager/elf.c: the bounded ELF readers of the initramfs builder. A
 * synthetic shared object (built here byte by byte) gives the known
 * answer; every truncation of it and every out-of-range offset must be
 * refused without reading outside the buffer (ASan checks that in CI,
 * each case has its own exactly-sized allocation). The test binary itself
 * is a real dynamically linked program. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imager/elf.h"
#include "elf_builder.h"

/* Layout of the synthetic object (offsets in the file; vaddr = off + 0x400000):
 *   0    ELF header
 *   64   3 program headers: PT_LOAD (whole file), PT_INTERP, PT_DYNAMIC
 *   232  interpreter string
 *   300  string table
 *   400  dynamic section
 *   560  end */
#define SO_SIZE 560
#define VBASE   0x400000u
#define OFF_PH  64
#define OFF_INT 232
#define OFF_STR 300
#define OFF_DYN 400
#define INTERP  "/lib64/ld-linux-x86-64.so.2"
static const char strtab[] = "\0libfoo.so.1\0libc.so.6\0$ORIGIN/../lib\0";

static void make_so(uint8_t *b)
{
	uint8_t *ph, *d;

	memset(b, 0, SO_SIZE);
	memcpy(b, "\177ELF", 4);
	b[4] = 2; /* 64-bit */
	b[5] = 1; /* little-endian */
	b[6] = 1;
	put16(b + 16, 3);  /* ET_DYN */
	put16(b + 18, 62); /* x86-64 */
	put64(b + 32, OFF_PH);
	put16(b + 54, 56);
	put16(b + 56, 3);
	ph = b + OFF_PH;
	put32(ph, 1); /* PT_LOAD */
	put64(ph + 8, 0);
	put64(ph + 16, VBASE);
	put64(ph + 32, SO_SIZE);
	ph += 56;
	put32(ph, 3); /* PT_INTERP */
	put64(ph + 8, OFF_INT);
	put64(ph + 32, sizeof(INTERP));
	ph += 56;
	put32(ph, 2); /* PT_DYNAMIC */
	put64(ph + 8, OFF_DYN);
	put64(ph + 32, 16 * 7);
	memcpy(b + OFF_INT, INTERP, sizeof(INTERP));
	memcpy(b + OFF_STR, strtab, sizeof(strtab));
	d = b + OFF_DYN;
	put64(d, 1); /* DT_NEEDED libfoo.so.1 */
	put64(d + 8, 1);
	put64(d + 16, 1); /* DT_NEEDED libc.so.6 */
	put64(d + 24, 13);
	put64(d + 32, 29); /* DT_RUNPATH */
	put64(d + 40, 23);
	put64(d + 48, 5); /* DT_STRTAB */
	put64(d + 56, VBASE + OFF_STR);
	put64(d + 64, 10); /* DT_STRSZ */
	put64(d + 72, sizeof(strtab));
	/* d + 80: DT_NULL */
}

static int parse_copy(const uint8_t *b, size_t len, struct img_elf_info *info)
{
	uint8_t *copy = malloc(len ? len : 1);
	char err[256];
	int e;

	assert_non_null(copy);
	memcpy(copy, b, len);
	e = img_elf_parse(copy, len, info, err, sizeof(err));
	free(copy);
	return e;
}

static void test_parse(void **state)
{
	uint8_t b[SO_SIZE];
	struct img_elf_info info;

	make_so(b);
	assert_int_equal(parse_copy(b, SO_SIZE, &info), 0);
	assert_int_equal(info.machine, 62);
	assert_true(info.dynamic);
	assert_string_equal(info.interp, INTERP);
	assert_int_equal(info.n_needed, 2);
	assert_string_equal(info.needed[0], "libfoo.so.1");
	assert_string_equal(info.needed[1], "libc.so.6");
	assert_string_equal(info.runpath, "$ORIGIN/../lib");
	assert_null(info.rpath);
	img_elf_info_clear(&info);
	img_elf_info_clear(NULL);
}

static void test_truncated(void **state)
{
	uint8_t b[SO_SIZE];
	struct img_elf_info info;

	make_so(b);
	/* Every prefix is refused (the PT_LOAD covers the whole file). */
	for (size_t len = 0; len < SO_SIZE; len++)
		assert_int_equal(parse_copy(b, len, &info), -EINVAL);
}

static void test_out_of_range(void **state)
{
	static const struct {
		size_t off;
		int width;
		uint64_t val;
	} muts[] = {
		{ 32, 64, UINT64_MAX - 10 },           /* e_phoff past the end, overflowing */
		{ 32, 64, SO_SIZE - 100 },             /* program headers cut by the end */
		{ 54, 16, 20 },                        /* e_phentsize too small */
		{ 56, 16, 0xffff },                    /* PN_XNUM */
		{ OFF_PH + 56 + 8, 64, SO_SIZE - 4 },  /* PT_INTERP offset: string not terminated */
		{ OFF_PH + 56 + 32, 64, UINT64_MAX },  /* PT_INTERP size overflowing */
		{ OFF_PH + 112 + 8, 64, SO_SIZE + 1 }, /* PT_DYNAMIC outside */
		{ OFF_PH + 32, 64, OFF_STR },          /* PT_LOAD too short for the string table */
		{ OFF_DYN + 56, 64, 0x1000 },          /* DT_STRTAB at an unmapped address */
		{ OFF_DYN + 72, 64, 1u << 20 },        /* DT_STRSZ beyond the file */
		{ OFF_DYN + 8, 64, 5000 },             /* DT_NEEDED offset beyond DT_STRSZ */
		{ OFF_DYN + 8, 64, 0 },                /* DT_NEEDED: the empty string */
		{ OFF_DYN + 40, 64, sizeof(strtab) - 1 }, /* DT_RUNPATH: "" at the end */
		{ 4, 8, 1 },                              /* 32-bit class */
		{ 5, 8, 2 },                              /* big-endian */
		{ 16, 16, 1 },                            /* ET_REL: not a program */
	};

	for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
		uint8_t b[SO_SIZE];
		struct img_elf_info info;

		make_so(b);
		if (muts[i].width == 64)
			put64(b + muts[i].off, muts[i].val);
		else if (muts[i].width == 16)
			put16(b + muts[i].off, (uint16_t)muts[i].val);
		else
			b[muts[i].off] = (uint8_t)muts[i].val;
		if (parse_copy(b, SO_SIZE, &info) != -EINVAL) {
			print_error("mutation %zu was accepted\n", i);
			fail();
		}
	}
}

static void test_static_and_self(void **state)
{
	uint8_t b[SO_SIZE], *self;
	struct img_elf_info info;
	bool libc = false;
	FILE *f;
	long n;

	/* No PT_INTERP, no PT_DYNAMIC: a static program, nothing needed. */
	make_so(b);
	put16(b + 56, 1);
	assert_int_equal(parse_copy(b, SO_SIZE, &info), 0);
	assert_null(info.interp);
	assert_false(info.dynamic);
	assert_int_equal(info.n_needed, 0);
	img_elf_info_clear(&info);

	f = fopen("/proc/self/exe", "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	self = malloc((size_t)n);
	assert_non_null(self);
	assert_int_equal(fread(self, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	assert_int_equal(parse_copy(self, (size_t)n, &info), 0);
	free(self);
	assert_non_null(info.interp);
	assert_int_equal(access(info.interp, X_OK), 0);
	for (size_t i = 0; i < info.n_needed; i++)
		libc = libc || strcmp(info.needed[i], "libc.so.6") == 0;
	assert_true(libc);
	img_elf_info_clear(&info);
}

static int collect(const char *v, size_t n, void *arg)
{
	char *out = arg;
	size_t l = strlen(out);

	snprintf(out + l, 128 - l, "[%.*s]", (int)n, v);
	return 0;
}

static void test_modinfo(void **state)
{
	static const char mi[] = "license=GPL\0depends=virtio,virtio_ring\0softdep=pre: crc32c\0"
	                         "firmware=a.bin\0firmware=b/c.bin\0dependsx=no\0";
	uint8_t b[1024];
	size_t len = make_ko(b, sizeof(b), mi, sizeof(mi)), off, size;
	char out[128] = "";
	struct img_elf_info info;
	char err[128];

	assert_int_equal(img_elf_section(b, len, ".modinfo", &off, &size, err, sizeof(err)), 0);
	assert_int_equal(size, sizeof(mi));
	img_elf_modinfo_each((const char *)b + off, size, "firmware", collect, out);
	assert_string_equal(out, "[a.bin][b/c.bin]");
	out[0] = '\0';
	img_elf_modinfo_each((const char *)b + off, size, "depends", collect, out);
	assert_string_equal(out, "[virtio,virtio_ring]");
	assert_int_equal(img_elf_section(b, len, ".text", &off, &size, err, sizeof(err)), -ENOENT);
	/* A module is not a program. */
	assert_int_equal(img_elf_parse(b, len, &info, err, sizeof(err)), -EINVAL);
	/* Section headers past the end; a section's data past the end. */
	for (size_t cut = 0; cut < len; cut += 7) {
		uint8_t *copy = malloc(cut ? cut : 1);
		assert_non_null(copy);
		memcpy(copy, b, cut);
		assert_true(img_elf_section(copy, cut, ".modinfo", &off, &size, NULL, 0) < 0);
		free(copy);
	}
	put64(b + len - 64 + 32, 1u << 30);
	assert_int_equal(img_elf_section(b, len, ".modinfo", &off, &size, NULL, 0), -EINVAL);
	/* The last string of a section without its NUL is still bounded. */
	out[0] = '\0';
	img_elf_modinfo_each("depends=a", 9, "depends", collect, out);
	assert_string_equal(out, "[a]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),        cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_out_of_range), cmocka_unit_test(test_static_and_self),
		cmocka_unit_test(test_modinfo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
