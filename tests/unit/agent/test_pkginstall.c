/* The pure parts of stage 2 package installs: NAME=VERSION specs, the
 * package arch of a uname machine, catalogue lookup by name, version and
 * arch (exact arch before "all"), payload member names (normalised,
 * refused when absolute, with "..", empty components or under
 * .rackboot/), the bounded tail of a script's output. Downloads, extraction, scripts and roll back
 * are covered by tests/integration/test_agent_pkginstall.sh against the real rackbootd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/pkginstall.h"
#include "agent/pkgscript.h"
#include "common/catalog.h"

static void test_spec(void **state)
{
	static const struct {
		const char *spec;
		int ret;
		const char *name, *version;
	} v[] = {
		{ "base=1.0", 0, "base", "1.0" },
		{ "lib-x_y+z=2.1~rc1", 0, "lib-x_y+z", "2.1~rc1" },
		{ "lib-x_y+z=2.1-rc1", 0, "lib-x_y+z", "2.1-rc1" },
		{ "base", -EINVAL, NULL, NULL },
		{ "=1.0", -EINVAL, NULL, NULL },
		{ "base=", -EINVAL, NULL, NULL },
		{ "base=1=2", -EINVAL, NULL, NULL },
		{ "../x=1", -EINVAL, NULL, NULL },
		{ "a/b=1", -EINVAL, NULL, NULL },
		{ "x=1 2", -EINVAL, NULL, NULL },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1", -EINVAL,
		  NULL, NULL }, /* 65 characters */
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1", 0,
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "1" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char n[65] = "", ver[65] = "";
		int r = agent_pkg_spec_parse(v[i].spec, n, ver);

		if (r != v[i].ret)
			fail_msg("%s: %d, expected %d", v[i].spec, r, v[i].ret);
		if (r == 0) {
			assert_string_equal(n, v[i].name);
			assert_string_equal(ver, v[i].version);
		}
	}
}

static void test_arch(void **state)
{
	(void)state;
	assert_string_equal(agent_pkg_arch_of_machine("x86_64"), "amd64");
	assert_string_equal(agent_pkg_arch_of_machine("aarch64"), "arm64");
	assert_string_equal(agent_pkg_arch_of_machine("i686"), "i386");
	assert_string_equal(agent_pkg_arch_of_machine("i386"), "i386");
	assert_string_equal(agent_pkg_arch_of_machine("i786"), "i786");
	assert_string_equal(agent_pkg_arch_of_machine("riscv64"), "riscv64");
	assert_string_equal(agent_pkg_arch_of_machine("ppc64le"), "ppc64le");
}

static void add(struct img_catalog *c, const char *name, const char *version, const char *arch)
{
	struct img_cat_package p = { .size = 1 };

	snprintf(p.name, sizeof(p.name), "%s", name);
	snprintf(p.version, sizeof(p.version), "%s", version);
	snprintf(p.arch, sizeof(p.arch), "%s", arch);
	snprintf(p.path, sizeof(p.path), "pkgs/%s_%s_%s.tar.zst", name, version, arch);
	memset(p.sha256, 'a', 64);
	assert_int_equal(img_catalog_add_package(c, &p), 0);
}

static void test_find(void **state)
{
	struct img_catalog *c = NULL;
	const struct img_cat_package *p;

	(void)state;
	assert_int_equal(img_catalog_new(&c), 0);
	add(c, "tool", "1.0", "all");
	add(c, "tool", "1.0", "amd64");
	add(c, "tool", "1.0", "arm64");
	add(c, "doc", "2", "all");
	add(c, "kmod", "3", "arm64");

	p = agent_pkg_find(c, "tool", "1.0", "amd64");
	assert_non_null(p);
	assert_string_equal(p->arch, "amd64"); /* exact arch wins over all */
	p = agent_pkg_find(c, "tool", "1.0", "riscv64");
	assert_non_null(p);
	assert_string_equal(p->arch, "all");
	p = agent_pkg_find(c, "doc", "2", "amd64");
	assert_non_null(p);
	assert_string_equal(p->arch, "all");
	assert_null(agent_pkg_find(c, "kmod", "3", "amd64"));
	assert_null(agent_pkg_find(c, "tool", "1.1", "amd64"));
	assert_null(agent_pkg_find(c, "tool", "1", "amd64"));
	assert_null(agent_pkg_find(c, "too", "1.0", "amd64"));
	img_catalog_free(c);
}

static void test_member(void **state)
{
	static const struct {
		const char *in;
		bool ok;
		const char *out;
	} v[] = {
		{ "usr/bin/x", true, "usr/bin/x" },
		{ "./usr/bin/x", true, "usr/bin/x" },
		{ ".//./usr/", true, "usr" },
		{ "etc/", true, "etc" },
		{ ".rackbootrc", true, ".rackbootrc" },
		{ "usr/.rackboot/x", true, "usr/.rackboot/x" },
		{ ".rackboot", false, NULL },
		{ ".rackboot/meta.json", false, NULL },
		{ "./.rackboot/scripts/postinst", false, NULL },
		{ "/etc/passwd", false, NULL },
		{ "../etc/passwd", false, NULL },
		{ "usr/../../etc", false, NULL },
		{ "usr//bin", false, NULL },
		{ "usr/./bin", false, NULL },
		{ "./", false, NULL },
		{ ".", false, NULL },
		{ "", false, NULL },
		{ "a\\b", false, NULL },
		{ "a\nb", false, NULL },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char buf[64];
		bool ok;

		snprintf(buf, sizeof(buf), "%s", v[i].in);
		ok = agent_pkg_member_ok(buf);
		if (ok != v[i].ok)
			fail_msg("\"%s\": %d, expected %d", v[i].in, ok, v[i].ok);
		if (ok)
			assert_string_equal(buf, v[i].out);
	}
}

static void test_tail(void **state)
{
	char out[9];
	size_t olen = 0;

	(void)state;
	agent_tail_append(out, &olen, 8, "abc", 3);
	assert_int_equal(olen, 3);
	assert_memory_equal(out, "abc", 3);
	agent_tail_append(out, &olen, 8, "defgh", 5); /* exactly full */
	assert_int_equal(olen, 8);
	assert_memory_equal(out, "abcdefgh", 8);
	agent_tail_append(out, &olen, 8, "XY", 2); /* the oldest two go */
	assert_int_equal(olen, 8);
	assert_memory_equal(out, "cdefghXY", 8);
	agent_tail_append(out, &olen, 8, "0123456789", 10); /* longer than the buffer */
	assert_int_equal(olen, 8);
	assert_memory_equal(out, "23456789", 8);
	agent_tail_append(out, &olen, 8, "", 0);
	assert_memory_equal(out, "23456789", 8);
	agent_tail_line(out, olen);
	assert_string_equal(out, "23456789");

	memcpy(out, "a\nb\tc\x01\x7f", 7);
	agent_tail_line(out, 7);
	assert_string_equal(out, "a b c??");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec), cmocka_unit_test(test_arch),
		cmocka_unit_test(test_find), cmocka_unit_test(test_member),
		cmocka_unit_test(test_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
