/* imager/kmod.c: module lookup and load order on small synthetic kernel
 * trees. A tree without modules.dep (like Debian's unpacked linux-image
 * package) takes dependencies from each module's .modinfo; a tree with one
 * takes them from it. Checked: dependency order, '-'/'_' names, built-in
 * and unknown modules, soft pre-dependencies, cycles, missing
 * dependencies, vermagic warnings, paths that would leave the tree, the
 * version choice, and the modules.dep written for busybox modprobe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf_builder.h"
#include "imager/kmod.h"

static char root[64];

static void write_file(const char *rel, const void *data, size_t len)
{
	char path[512], *slash;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (slash = strchr(path + strlen(root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(path, 0755);
		*slash = '/';
	}
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A module file whose .modinfo holds the given "k=v\0k=v\0" strings. */
static void write_ko(const char *rel, const char *mi, size_t mlen)
{
	uint8_t b[2048];
	size_t n = make_ko(b, sizeof(b), mi, mlen);

	assert_true(n > 0);
	write_file(rel, b, n);
}

#define KO(rel, mi) write_ko(rel, mi, sizeof(mi))
#define V1          "lib/modules/1.2.3-test/"

static int setup(void **state)
{
	snprintf(root, sizeof(root), "/tmp/rbt-kmod.XXXXXX");
	assert_non_null(mkdtemp(root));
	KO(V1 "kernel/a/m_a.ko", "depends=m_b,dash-mod\0vermagic=1.2.3-test SMP mod_unload ");
	KO(V1 "kernel/a/m_b.ko", "depends=m_c\0vermagic=1.2.3-test SMP");
	KO(V1 "kernel/b/m_c.ko", "depends=\0vermagic=1.2.3-test");
	KO(V1 "kernel/b/dash-mod.ko", "vermagic=1.2.3-test");
	KO(V1 "kernel/c/soft.ko", "softdep=pre: pre_mod missing_soft post: m_c\0depends=");
	KO(V1 "kernel/c/pre_mod.ko", "depends=");
	KO(V1 "kernel/c/cyc1.ko", "depends=cyc2");
	KO(V1 "kernel/c/cyc2.ko", "depends=cyc1");
	KO(V1 "kernel/c/broken.ko", "depends=not_there");
	KO(V1 "kernel/c/old.ko", "vermagic=9.9.9-other SMP");
	KO(V1 "kernel/c/fw.ko", "firmware=vendor/fw1.bin\0firmware=../../etc/shadow\0");
	write_file(V1 "kernel/c/notelf.ko", "hello", 5);
	static const char builtin[] = "kernel/x/built_in.ko\nkernel/x/other-one.ko\n";
	write_file(V1 "modules.builtin", builtin, sizeof(builtin) - 1);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static char warned[1024];

static void on_warn(const char *msg, void *arg)
{
	size_t l = strlen(warned);
	snprintf(warned + l, sizeof(warned) - l, "%s\n", msg);
}

static void order_is(struct img_kmods *k, const char *want)
{
	char got[512] = "";

	for (size_t i = 0; i < k->n_order; i++) {
		size_t l = strlen(got);
		snprintf(got + l, sizeof(got) - l, "%s%s", i ? " " : "", k->order[i]->name);
	}
	assert_string_equal(got, want);
}

static void test_modinfo_tree(void **state)
{
	struct img_kmods *k = NULL;
	char err[512], *dep;
	size_t dep_len;

	warned[0] = '\0';
	assert_int_equal(img_kmods_open(root, NULL, on_warn, NULL, &k, err, sizeof(err)), 0);
	assert_string_equal(k->version, "1.2.3-test");
	assert_false(k->have_dep_file);
	assert_int_equal(img_kmods_add(k, "m_a", err, sizeof(err)), 0);
	order_is(k, "m_c m_b dash_mod m_a");
	/* Either spelling; a second time adds nothing. */
	assert_int_equal(img_kmods_add(k, "dash_mod", err, sizeof(err)), 0);
	assert_int_equal(img_kmods_add(k, "m-b", err, sizeof(err)), 0);
	order_is(k, "m_c m_b dash_mod m_a");
	assert_int_equal(img_kmods_add(k, "built_in", err, sizeof(err)), 1);
	assert_int_equal(img_kmods_add(k, "other-one", err, sizeof(err)), 1);
	assert_int_equal(img_kmods_add(k, "no_such", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no_such"));
	/* Soft pre-dependencies first, when the tree has them. */
	assert_int_equal(img_kmods_add(k, "soft", err, sizeof(err)), 0);
	order_is(k, "m_c m_b dash_mod m_a pre_mod soft");
	assert_int_equal(img_kmods_add(k, "cyc1", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cycle"));
	assert_int_equal(img_kmods_add(k, "broken", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not_there"));
	assert_int_equal(img_kmods_add(k, "notelf", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not an ELF"));
	assert_string_equal(warned, "");
	assert_int_equal(img_kmods_add(k, "old", err, sizeof(err)), 0);
	assert_non_null(strstr(warned, "old was built for another kernel"));
	/* Firmware names that would leave /lib/firmware are dropped. */
	assert_int_equal(img_kmods_add(k, "fw", err, sizeof(err)), 0);
	assert_int_equal(k->order[k->n_order - 1]->n_firmware, 1);
	assert_string_equal(k->order[k->n_order - 1]->firmware[0], "vendor/fw1.bin");
	/* modprobe loads the listed dependencies from last to first. */
	assert_int_equal(img_kmods_dep_text(k, &dep, &dep_len), 0);
	assert_non_null(strstr(dep, "kernel/a/m_a.ko: kernel/b/dash-mod.ko kernel/a/m_b.ko "
	                            "kernel/b/m_c.ko\n"));
	assert_non_null(strstr(dep, "kernel/b/m_c.ko:\n"));
	assert_int_equal(strlen(dep), dep_len);
	free(dep);
	img_kmods_free(k);
	img_kmods_free(NULL);
}

static void test_dep_file_and_versions(void **state)
{
	static const char dep[] = "kernel/d/x.ko: kernel/d/y.ko kernel/d/z.ko\n"
	                          "kernel/d/y.ko: kernel/d/z.ko\n"
	                          "kernel/d/z.ko:\n";
	struct img_kmods *k = NULL;
	char err[512];

	KO("lib/modules/2.0-dep/kernel/d/x.ko", "depends=ignored_when_modules_dep");
	KO("lib/modules/2.0-dep/kernel/d/y.ko", "vermagic=2.0-dep");
	KO("lib/modules/2.0-dep/kernel/d/z.ko", "vermagic=2.0-dep");
	write_file("lib/modules/2.0-dep/modules.dep", dep, sizeof(dep) - 1);

	/* Two versions and a root that is not "/": the caller must pick. */
	assert_int_equal(img_kmods_open(root, NULL, NULL, NULL, &k, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "--kernel-version"));
	assert_int_equal(img_kmods_open(root, "9.9", NULL, NULL, &k, err, sizeof(err)), -EINVAL);
	assert_int_equal(img_kmods_open(root, "../x", NULL, NULL, &k, err, sizeof(err)), -EINVAL);

	assert_int_equal(img_kmods_open(root, "2.0-dep", NULL, NULL, &k, err, sizeof(err)), 0);
	assert_true(k->have_dep_file);
	assert_int_equal(img_kmods_add(k, "x", err, sizeof(err)), 0);
	order_is(k, "z y x");
	img_kmods_free(k);

	/* A modules.dep path out of the tree is refused. */
	static const char evil[] = "../../../../etc/evil.ko:\n";
	write_file("lib/modules/2.0-dep/modules.dep", evil, sizeof(evil) - 1);
	assert_int_equal(img_kmods_open(root, "2.0-dep", NULL, NULL, &k, err, sizeof(err)),
	                 -EINVAL);
	assert_non_null(strstr(err, "unsafe path"));
	/* A dependency modules.dep names but does not list. */
	static const char dangling[] = "kernel/d/x.ko: kernel/d/gone.ko\n";
	write_file("lib/modules/2.0-dep/modules.dep", dangling, sizeof(dangling) - 1);
	assert_int_equal(img_kmods_open(root, "2.0-dep", NULL, NULL, &k, err, sizeof(err)), 0);
	assert_int_equal(img_kmods_add(k, "x", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "gone"));
	img_kmods_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_modinfo_tree),
		cmocka_unit_test(test_dep_file_and_versions),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
