/* Bounded helpers: numbers, MACs, path confinement below a root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_strtonum(void **state)
{
	long long v = -1;

	assert_int_equal(rb_strtonum("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(rb_strtonum("-5", -10, 10, &v), 0);
	assert_int_equal(v, -5);
	v = 7;
	assert_int_equal(rb_strtonum("", 0, 100, &v), -EINVAL);
	assert_int_equal(rb_strtonum(" 4", 0, 100, &v), -EINVAL);
	assert_int_equal(rb_strtonum("4x", 0, 100, &v), -EINVAL);
	assert_int_equal(rb_strtonum("101", 0, 100, &v), -ERANGE);
	assert_int_equal(rb_strtonum("99999999999999999999999", 0, 100, &v), -ERANGE);
	assert_int_equal(v, 7); /* untouched on failure */
}

static void test_mac(void **state)
{
	uint8_t m[6] = { 0 };
	char buf[18];

	assert_int_equal(rb_mac_parse("52:54:00:AB:cd:0f", m), 0);
	assert_string_equal(rb_mac_format(m, buf), "52:54:00:ab:cd:0f");
	assert_int_equal(rb_mac_parse("52-54-00-ab-cd-0f", m), 0);
	assert_int_equal(rb_mac_parse("52:54:00:ab:cd", m), -EINVAL);
	assert_int_equal(rb_mac_parse("52:54:00:ab:cd:0g", m), -EINVAL);
	assert_int_equal(rb_mac_parse("52:54:00:ab:cd:0f:", m), -EINVAL);
	assert_int_equal(rb_mac_parse("525400abcd0f00000", m), -EINVAL);
}

static void test_path_is_safe(void **state)
{
	static const struct {
		const char *p;
		bool ok;
	} v[] = {
		{ "undionly.kpxe", true },
		{ "a/b/c.efi", true },
		{ "a..b", true },
		{ "..", false },
		{ "../etc/passwd", false },
		{ "a/../b", false },
		{ "a/..", false },
		{ "/etc/passwd", false },
		{ "a//b", false },
		{ "./a", false },
		{ "a/", false },
		{ "", false },
		{ "..\\x", false },
		{ "a\\..\\b", false },
		{ "a\nb", false },
		{ "a\x7f", false },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (rb_path_is_safe(v[i].p) != v[i].ok)
			fail_msg("rb_path_is_safe(\"%s\") != %d", v[i].p, v[i].ok);
}

static void test_open_beneath(void **state)
{
	char root[] = "/tmp/rbrootXXXXXX";
	char p[256];
	int dfd, fd;

	assert_non_null(mkdtemp(root));
	snprintf(p, sizeof(p), "%s/sub", root);
	assert_int_equal(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/sub/file", root);
	fd = open(p, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hi", 2), 2);
	close(fd);
	snprintf(p, sizeof(p), "%s/escape", root);
	assert_int_equal(symlink("/etc/passwd", p), 0);
	snprintf(p, sizeof(p), "%s/inside", root);
	assert_int_equal(symlink("sub/file", p), 0);
	snprintf(p, sizeof(p), "%s/updir", root);
	assert_int_equal(symlink("..", p), 0);

	dfd = open(root, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	fd = rb_open_beneath(dfd, "sub/file", O_RDONLY);
	assert_true(fd >= 0);
	close(fd);
	fd = rb_open_beneath(dfd, "inside", O_RDONLY); /* symlink that stays inside */
	assert_true(fd >= 0);
	close(fd);
	assert_true(rb_open_beneath(dfd, "escape", O_RDONLY) < 0);
	assert_true(rb_open_beneath(dfd, "updir/etc/passwd", O_RDONLY) < 0);
	assert_int_equal(rb_open_beneath(dfd, "../etc/passwd", O_RDONLY), -EACCES);
	assert_int_equal(rb_open_beneath(dfd, "/etc/passwd", O_RDONLY), -EACCES);
	assert_int_equal(rb_open_beneath(dfd, "missing", O_RDONLY), -ENOENT);
	close(dfd);
	snprintf(p, sizeof(p), "rm -rf %s", root);
	assert_int_equal(system(p), 0);
}

static void test_whole_io(void **state)
{
	char path[] = "/tmp/rbioXXXXXX";
	char buf[8];
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(rb_write_all(fd, "abcd", 4), 0);
	assert_int_equal(rb_pwrite_all(fd, "XY", 2, 6), 0); /* leaves a 2-byte hole */
	assert_int_equal(rb_pread_all(fd, buf, 8, 0), 0);
	assert_memory_equal(buf, "abcd\0\0XY", 8);
	/* reading past the end is an error, not a short read */
	assert_int_equal(rb_pread_all(fd, buf, 4, 6), -EIO);
	assert_int_equal(rb_pwrite_all(-1, "x", 1, 0), -EBADF);
	close(fd);
}

static void test_escape(void **state)
{
	char buf[32];

	assert_string_equal(rb_escape(buf, sizeof(buf), "ok.efi", 6), "ok.efi");
	assert_string_equal(rb_escape(buf, sizeof(buf), "a\nb\"\x01", 5), "a\\x0ab\\x22\\x01");
	/* truncates whole escapes, always terminated */
	assert_string_equal(rb_escape(buf, 6, "\x01\x02", 2), "\\x01");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strtonum),     cmocka_unit_test(test_mac),
		cmocka_unit_test(test_path_is_safe), cmocka_unit_test(test_open_beneath),
		cmocka_unit_test(test_escape),       cmocka_unit_test(test_whole_io),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
