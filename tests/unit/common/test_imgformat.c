/* Format detection by magic: a table of heads (magic bytes placed at their
 * offsets in a 4 KiB buffer), what each is taken for, whether it is
 * refused and what the refusal tells the user to run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/imgformat.h"

#include <stdint.h>
#include <string.h>

struct vec {
	const char *what;
	size_t off;
	const char *magic;
	size_t magic_len;
	size_t buf_len; /* bytes passed to the detector */
	const char *name;
	bool refused;
	const char *advice; /* substring of img_format_advice(name), or NULL */
};

#define V(w, o, m, len, n, r, a)                                                                   \
	{                                                                                          \
		w, o, m, sizeof(m) - 1, len, n, r, a                                               \
	}

static const struct vec vectors[] = {
	V("qcow2 v3", 0, "QFI\xfb\0\0\0\3", 4096, "qcow2", true,
	  "qemu-img convert -f qcow2 -O raw in.qcow2 out.img"),
	V("qed", 0, "QED\0", 4096, "qed", true, "qemu-img convert -f qed -O raw"),
	V("vmdk sparse", 0, "KDMV\1\0\0\0", 4096, "vmdk", true, "qemu-img convert -f vmdk -O raw"),
	V("vmdk descriptor", 0, "# Disk DescriptorFile\nversion=1\n", 4096, "vmdk", true,
	  "qemu-img convert -f vmdk -O raw"),
	V("vmdk3 sparse (COWD)", 0, "COWD\1\0\0\0", 4096, "vmdk", true,
	  "qemu-img convert -f vmdk -O raw"),
	/* descriptors as QEMU's vmdk_probe() takes them: any comments, lines
	 * of spaces, then version=1..3 ending its line */
	V("vmdk descriptor, another first comment", 0,
	  "# made by hand\n   \n#\nversion=1\nCID=fffffffe\nRW 131072 FLAT \"/etc/shadow\" 0\n",
	  4096, "vmdk", true, "qemu-img convert -f vmdk -O raw"),
	V("vmdk descriptor, no comment, CRLF", 0, "version=3\r\nCID=1\r\n", 4096, "vmdk", true,
	  NULL),
	V("vmdk descriptor, blank line with CR", 0, "  \r\nversion=2\n", 4096, "vmdk", true, NULL),
	V("vmdk descriptor in exactly its bytes", 0, "# c\nversion=1\n", 14, "vmdk", true, NULL),
	V("descriptor cut before its newline", 0, "# c\nversion=1", 13, "raw", false, NULL),
	V("descriptor cut in a comment", 0, "# no end", 8, "raw", false, NULL),
	V("comment, then text", 0, "# hello\nworld\n", 4096, "raw", false, NULL),
	V("version=4", 0, "version=4\n", 4096, "raw", false, NULL),
	V("empty line before version", 0, "\nversion=1\n", 4096, "raw", false, NULL),
	V("vhdx", 0, "vhdxfile", 4096, "vhdx", true, "qemu-img convert -f vhdx -O raw"),
	V("vhd dynamic", 0, "conectix\0\0\0\2", 4096, "vhd", true,
	  "qemu-img convert -f vpc -O raw"),
	V("vdi", 0x40, "\x7f\x10\xda\xbe", 4096, "vdi", true, "qemu-img convert -f vdi -O raw"),
	V("parallels", 0, "WithoutFreeSpace", 4096, "parallels", true, "-f parallels"),
	V("gzip", 0, "\x1f\x8b\x08", 4096, "gzip", false, NULL),
	V("xz", 0, "\xfd\x37\x7a\x58\x5a\x00", 4096, "xz", false, NULL),
	V("zstd", 0, "\x28\xb5\x2f\xfd", 4096, "zstd", false, NULL),
	V("bzip2", 0, "BZh9", 4096, "bzip2", true, "bzip2 -dc in.img.bz2 | zstd"),
	V("BZh not followed by a level", 0, "BZhx", 4096, "raw", false, NULL),
	V("tar (ustar)", 257,
	  "ustar\0"
	  "00",
	  4096, "tar", false, NULL),
	V("GPT", 512, "EFI PART", 4096, "raw-gpt", false, NULL),
	V("MBR", 510, "\x55\xaa", 4096, "raw-mbr", false, NULL),
	V("zeros", 0, "", 4096, "raw", false, NULL),
	/* short buffers: a magic past the end is not matched, nothing is read
	 * past len (ASan would say) */
	V("GPT header cut short", 512, "EFI PART", 519, "raw", false, NULL),
	V("MBR in 511 bytes", 510, "\x55\xaa", 511, "raw", false, NULL),
	V("qcow2 in 3 bytes", 0, "QFI\xfb", 3, "raw", false, NULL),
	V("empty", 0, "", 0, "raw", false, NULL),
	V("vdi header cut short", 0x40, "\x7f\x10\xda\xbe", 0x43, "raw", false, NULL),
};

static void test_detect(void **state)
{
	static uint8_t buf[4096];

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct vec *v = &vectors[i];
		const char *name = NULL, *advice;
		bool refused = !v->refused;
		uint8_t *exact;

		memset(buf, 0, sizeof(buf));
		memcpy(buf + v->off, v->magic, v->magic_len);
		/* copy into an exact-size heap buffer so overreads are caught */
		exact = test_malloc(v->buf_len ? v->buf_len : 1);
		memcpy(exact, buf, v->buf_len);
		assert_int_equal(img_detect_format(exact, v->buf_len, &name, &refused), 0);
		test_free(exact);
		if (strcmp(name, v->name) != 0 || refused != v->refused)
			fail_msg("%s: got %s/%d, expected %s/%d", v->what, name, refused, v->name,
			         v->refused);
		advice = img_format_advice(name);
		if (v->advice) {
			assert_non_null(advice);
			if (!strstr(advice, v->advice))
				fail_msg("%s: advice \"%s\" lacks \"%s\"", v->what, advice,
				         v->advice);
		} else if (!v->refused) {
			assert_null(advice);
		}
	}
}

static void test_gpt_before_mbr(void **state)
{
	static uint8_t buf[4096];
	const char *name;
	bool refused;

	/* A GPT disk has a protective MBR too: GPT wins. */
	buf[510] = 0x55;
	buf[511] = 0xaa;
	memcpy(buf + 512, "EFI PART", 8);
	assert_int_equal(img_detect_format(buf, sizeof(buf), &name, &refused), 0);
	assert_string_equal(name, "raw-gpt");
	assert_false(refused);
}

/* A descriptor whose comment carries an MBR signature, a GPT header and a
 * tar magic is still a VMDK to QEMU, so to us. */
static void test_descriptor_hides_table(void **state)
{
	static uint8_t buf[4096];
	const char *name;
	bool refused;

	memset(buf, 'x', sizeof(buf));
	buf[0] = '#';
	memcpy(buf + 257, "ustar", 5);
	buf[510] = 0x55;
	buf[511] = 0xaa;
	memcpy(buf + 512, "EFI PART", 8);
	buf[1000] = '\n';
	memcpy(buf + 1001, "version=1\n", 10);
	assert_int_equal(img_detect_format(buf, sizeof(buf), &name, &refused), 0);
	assert_string_equal(name, "vmdk");
	assert_true(refused);
	/* without the version line it is what its magics say: tar first,
	 * then the GPT disk */
	buf[1001] = 'X';
	assert_int_equal(img_detect_format(buf, sizeof(buf), &name, &refused), 0);
	assert_string_equal(name, "tar");
	assert_false(refused);
	memset(buf + 257, 'x', 5);
	assert_int_equal(img_detect_format(buf, sizeof(buf), &name, &refused), 0);
	assert_string_equal(name, "raw-gpt");
	assert_false(refused);
}

static void test_tail(void **state)
{
	static uint8_t tail[512];
	const char *name = NULL;

	/* fixed VHD: only a footer at the end of the file */
	memset(tail, 0, sizeof(tail));
	assert_false(img_detect_tail(tail, sizeof(tail), &name));
	assert_null(name);
	memcpy(tail, "conectix", 8);
	assert_true(img_detect_tail(tail, sizeof(tail), &name));
	assert_string_equal(name, "vhd");
	/* the 511-byte footer of old Virtual PC */
	memset(tail, 0, sizeof(tail));
	memcpy(tail + 1, "conectix", 8);
	name = NULL;
	assert_true(img_detect_tail(tail, sizeof(tail), &name));
	assert_string_equal(name, "vhd");
	/* too short to hold a footer */
	name = NULL;
	assert_false(img_detect_tail(tail, 100, &name));
	assert_null(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_gpt_before_mbr),
		cmocka_unit_test(test_descriptor_hides_table),
		cmocka_unit_test(test_tail),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
