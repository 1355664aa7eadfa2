/* Repository catalogue: round trip, add/replace/find/remove, and every
 * rejection (paths, kinds, duplicates, types, counts) with its message;
 * a package's "allow" list and "reboot" flag, and the rule that judges an
 * archive member's mode against that list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/catalog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define H "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define IMG(n, v, path)                                                                            \
	"{\"name\":\"" n "\",\"version\":\"" v "\",\"manifest\":\"" path                           \
	"\",\"manifest_sha256\":\"" H "\",\"disk_size\":8589934592,\"stored_bytes\":10}"
#define PLAIN(n, v, path, kind)                                                                    \
	"{\"name\":\"" n "\",\"version\":\"" v "\",\"path\":\"" path "\",\"kind\":\"" kind         \
	"\",\"sha256\":\"" H "\",\"size\":123}"
#define PKG(n, v, a, path)                                                                         \
	"{\"name\":\"" n "\",\"version\":\"" v "\",\"arch\":\"" a "\",\"path\":\"" path            \
	"\",\"sha256\":\"" H "\",\"size\":77}"
#define PKGR(n, v, rel)                                                                            \
	"{\"name\":\"" n "\",\"version\":\"" v "\",\"arch\":\"amd64\",\"path\":\"pkgs/" n          \
	"\",\"sha256\":\"" H "\",\"size\":77," rel "}"
#define CAT(i, p, k)                                                                               \
	"{\"format\":\"rackboot-catalog/1\",\"generated\":1795796000,\"images\":[" i "],"          \
	"\"plain\":[" p "],\"packages\":[" k "]}"
#define GOOD_IMG IMG("deb", "1", "images/deb/1.manifest.json")

static void test_accepts(void **state)
{
	static const char *const ok[] = {
		CAT("", "", ""),
		CAT(GOOD_IMG "," IMG("deb", "2", "images/deb/2.manifest.json"),
		    PLAIN("alma", "9", "plain/alma-9.img.xz",
		          "raw.xz") "," PLAIN("rootfs", "1", "plain/rootfs.tar.zst", "tar.zst"),
		    PKG("nvidia", "550.1", "amd64", "pkgs/nvidia_550.1_amd64.tar.zst") "," PKG(
		            "nvidia", "550.1", "arm64", "pkgs/nvidia_550.1_arm64.tar.zst")),
		/* relations (optional, may be empty) and a '~' version */
		CAT("", "",
		    PKGR("p", "1.0~rc1", "\"depends\":[],\"conflicts\":[\"q (<< 2~)\"]") "," PKGR(
		            "q", "1", "\"depends\":[\"p\",\"r (= 1.0-1)\",\"s (>> 0)\"]")),
		/* unknown top-level keys are ignored */
		"{\"format\":\"rackboot-catalog/1\",\"generated\":1,\"images\":[],\"plain\":[],"
		"\"packages\":[],\"mirrors\":[\"x\"]}",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct img_catalog *c = NULL;
		char err[256] = "";

		if (img_catalog_parse(ok[i], strlen(ok[i]), &c, err, sizeof(err)) != 0)
			fail_msg("vector %zu refused: %s", i, err);
		img_catalog_free(c);
	}
}

static void test_rejects(void **state)
{
	static const struct {
		const char *json;
		const char *msg;
	} v[] = {
		{ "nope", "not JSON" },
		{ "[\"x\"]", "expected a JSON object" },
		{ "{\"generated\":1,\"images\":[],\"plain\":[],\"packages\":[]}",
		  "format: missing" },
		{ "{\"format\":\"rackboot-catalog/2\",\"generated\":1,\"images\":[],\"plain\":[],"
		  "\"packages\":[]}",
		  "format: not" },
		{ "{\"format\":\"rackboot-catalog/1\",\"images\":[],\"plain\":[],\"packages\":[]}",
		  "generated: missing" },
		{ "{\"format\":\"rackboot-catalog/"
		  "1\",\"generated\":1,\"plain\":[],\"packages\":[]}",
		  "images: missing" },
		{ "{\"format\":\"rackboot-catalog/1\",\"generated\":1,\"images\":{},\"plain\":[],"
		  "\"packages\":[]}",
		  "images: expected an array" },
		{ CAT("7", "", ""), "images[0]: expected an object" },
		{ CAT("{\"name\":\"deb\"}", "", ""), "images[0].version: missing field" },
		{ CAT(GOOD_IMG "," IMG("deb", "1", "images/deb/1b.manifest.json"), "", ""),
		  "images[1]: duplicate of images[0] (deb 1)" },
		{ CAT(IMG("../deb", "1", "images/deb/1.manifest.json"), "", ""),
		  "images[0].name: must match" },
		{ CAT(IMG("deb", "1", "images/../../etc/passwd"), "", ""),
		  "images[0].manifest: not a safe relative path below images/" },
		{ CAT(IMG("deb", "1", "/etc/passwd"), "", ""), "images[0].manifest: not a safe" },
		{ CAT(IMG("deb", "1", "plain/x.img"), "", ""), "images[0].manifest: not a safe" },
		{ CAT(IMG("deb", "1", "images/"), "", ""), "images[0].manifest: not a safe" },
		{ CAT("{\"name\":\"deb\",\"version\":\"1\",\"manifest\":\"images/a\","
		      "\"manifest_sha256\":\"" H "\",\"disk_size\":1000,\"stored_bytes\":1}",
		      "", ""),
		  "images[0].disk_size: 1000 must be" },
		{ CAT("{\"name\":\"deb\",\"version\":\"1\",\"manifest\":\"images/a\","
		      "\"manifest_sha256\":\"" H "\",\"disk_size\":512,\"stored_bytes\":-1}",
		      "", ""),
		  "images[0].stored_bytes: negative" },
		{ CAT("{\"name\":\"deb\",\"version\":\"1\",\"manifest\":\"images/a\","
		      "\"manifest_sha256\":\"" H "\",\"disk_size\":\"512\",\"stored_bytes\":1}",
		      "", ""),
		  "images[0].disk_size: expected an integer" },
		{ CAT("{\"name\":\"deb\",\"version\":\"1\",\"manifest\":\"images/a\","
		      "\"manifest_sha256\":\"ABCD\",\"disk_size\":512,\"stored_bytes\":1}",
		      "", ""),
		  "images[0].manifest_sha256: not 64 lowercase hex" },
		{ CAT("", PLAIN("alma", "9", "plain/alma.qcow2", "qcow2"), ""),
		  "plain[0].kind: must be one of" },
		{ CAT("", PLAIN("alma", "9", "plain/a\\u0001b.img", "raw"), ""),
		  "plain[0].path: not a safe" },
		{ CAT("", PLAIN("alma", "9", "plain\\\\a.img", "raw"), ""),
		  "plain[0].path: not a safe" },
		{ CAT("",
		      PLAIN("alma", "9", "plain/a.img", "raw") "," PLAIN("alma", "9", "plain/b.img",
		                                                         "raw"),
		      ""),
		  "plain[1]: duplicate of plain[0]" },
		{ CAT("", "",
		      PKG("p", "1", "amd64", "pkgs/p.tar.zst") "," PKG("p", "1", "amd64",
		                                                       "pkgs/q.tar.zst")),
		  "packages[1]: duplicate of packages[0]" },
		{ CAT("", "", PKG("p", "1", "amd 64", "pkgs/p.tar.zst")),
		  "packages[0].arch: must match" },
		{ CAT("", "", PKG("p", "1", "amd64", "pkgs/p\\u0000.tar.zst")),
		  "not allowed without JSON_ALLOW_NUL" },
		{ CAT("", "", PKG("p", "1", "amd64", "images/p.tar.zst")),
		  "packages[0].path: not a safe relative path below pkgs/" },
		/* relations */
		{ CAT("", "", PKGR("p", "1", "\"depends\":\"a\"")),
		  "packages[0].depends: expected an array of strings" },
		{ CAT("", "", PKGR("p", "1", "\"depends\":[\"a\",7]")),
		  "packages[0].depends[1]: expected a string" },
		{ CAT("", "", PKGR("p", "1", "\"depends\":[\"a\"],\"conflicts\":[\"b (> 1)\"]")),
		  "packages[0].conflicts[0]: must be \"name\" or \"name (OP version)\"" },
		{ CAT("", "", PKGR("p", "1", "\"depends\":[\"a (>=1)\"]")),
		  "packages[0].depends[0]: must be" },
		{ CAT("", "", PKGR("p", "1", "\"depends\":[\"a, b\"]")),
		  "packages[0].depends[0]: must be" },
		{ CAT("", "", PKGR("p", "1", "\"depends\":[\"../a\"]")),
		  "packages[0].depends[0]: must be" },
		{ CAT("", "", PKGR("p", "1", "\"depends\":[\"\"]")),
		  "packages[0].depends[0]: must be" },
		{ CAT("", "", PKGR("p", "1", "\"conflicts\":{}")),
		  "packages[0].conflicts: expected an array" },
		{ CAT("", "",
		      PKG("p", "1~", "amd64", "pkgs/p") "," PKGR("q", "1:2", "\"depends\":[]")),
		  "packages[1].version: must match [A-Za-z0-9._+~-]{1,64}" },
		{ CAT("", "", PKGR("p", "1", "\"depends\":[\"a (= 1:2)\"]")),
		  "packages[0].depends[0]: must be" },
		/* allow and reboot */
		{ CAT("", "", PKGR("p", "1", "\"allow\":[\"suid\"]")),
		  "packages[0].allow[0]: not one of \"setuid\", \"devices\", \"fifos\"" },
		{ CAT("", "", PKGR("p", "1", "\"allow\":[\"setuid\",\"Devices\"]")),
		  "packages[0].allow[1]: not one of" },
		{ CAT("", "", PKGR("p", "1", "\"allow\":[\"setuid,devices\"]")),
		  "packages[0].allow[0]: not one of" },
		{ CAT("", "", PKGR("p", "1", "\"allow\":[\"setuid\\u0000x\"]")),
		  "not allowed without JSON_ALLOW_NUL" },
		{ CAT("", "", PKGR("p", "1", "\"allow\":[\"\"]")),
		  "packages[0].allow[0]: not one of" },
		{ CAT("", "", PKGR("p", "1", "\"allow\":[1]")),
		  "packages[0].allow[0]: not one of" },
		{ CAT("", "", PKGR("p", "1", "\"allow\":\"setuid\"")),
		  "packages[0].allow: expected an array" },
		{ CAT("", "", PKGR("p", "1", "\"allow\":[\"fifos\",\"setuid\",\"fifos\"]")),
		  "packages[0].allow[2]: \"fifos\" given twice" },
		{ CAT("", "",
		      PKG("p", "1", "all", "pkgs/p") "," PKGR("q", "1", "\"reboot\":\"yes\"")),
		  "packages[1].reboot: expected true or false" },
		{ CAT("", "", PKGR("p", "1", "\"reboot\":1")),
		  "packages[0].reboot: expected true" },
		{ CAT("", "", PKGR("p", "1", "\"reboot\":null")),
		  "packages[0].reboot: expected true" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct img_catalog *c = (struct img_catalog *)0x1;
		char err[256] = "";
		int r = img_catalog_parse(v[i].json, strlen(v[i].json), &c, err, sizeof(err));

		if (r != -EINVAL)
			fail_msg("vector %zu: r=%d (%s), expected -EINVAL", i, r, err);
		if (!strstr(err, v[i].msg))
			fail_msg("vector %zu: message \"%s\" lacks \"%s\"", i, err, v[i].msg);
		assert_ptr_equal(c, (struct img_catalog *)0x1);
	}
}

/* Relation lists: 64 entries of 128 bytes are the most; one more entry, or
 * one more byte, is refused. Absent and empty lists read as empty. */
static void test_relation_limits(void **state)
{
	char *s = malloc(65 * 140 + 1024), dep[140], err[256] = "";
	struct img_catalog *c = NULL;
	size_t len;

	(void)state;
	assert_non_null(s);
	/* 60-byte name + " (>= " + 62-byte version + ")" = 128 bytes */
	memset(dep, 'a', 60);
	memcpy(dep + 60, " (>= ", 5);
	memset(dep + 65, '1', 62);
	memcpy(dep + 127, ")", 2);
	for (int extra = 0; extra < 3; extra++) {
		int n = extra == 1 ? 65 : 64;

		len = (size_t)snprintf(s, 1024,
		                       "{\"format\":\"rackboot-catalog/1\",\"generated\":1,"
		                       "\"images\":[],\"plain\":[],\"packages\":[{\"name\":\"p\","
		                       "\"version\":\"1\",\"arch\":\"all\",\"path\":\"pkgs/p\","
		                       "\"sha256\":\"" H "\",\"size\":1,\"conflicts\":[],"
		                       "\"depends\":[");
		for (int i = 0; i < n; i++)
			len += (size_t)snprintf(s + len, 200, "%s\"%s%s\"", i ? "," : "",
			                        extra == 2 && i == 5 ? "a" : "", dep);
		len += (size_t)snprintf(s + len, 20, "]}]}");
		err[0] = '\0';
		if (extra == 0) {
			if (img_catalog_parse(s, len, &c, err, sizeof(err)) != 0)
				fail_msg("64 x 128 bytes refused: %s", err);
			assert_int_equal(c->packages[0].n_depends, 64);
			assert_string_equal(c->packages[0].depends[63], dep);
			assert_int_equal(c->packages[0].n_conflicts, 0);
			assert_null(c->packages[0].conflicts);
			img_catalog_free(c);
		} else {
			assert_int_equal(img_catalog_parse(s, len, &c, err, sizeof(err)), -EINVAL);
			assert_non_null(strstr(
			        err, extra == 1 ? "packages[0].depends: 65 entries, more than 64"
			                        : "packages[0].depends[5]: must be"));
		}
	}
	free(s);
}

static void test_huge_count(void **state)
{
	/* 100001 entries: refused by count before any entry is allocated. */
	size_t n = IMG_CATALOG_MAX_ENTRIES + 1, len = 0;
	char *s = malloc(n * 3 + 200), err[256] = "";
	struct img_catalog *c = NULL;

	assert_non_null(s);
	len += (size_t)snprintf(s, 200,
	                        "{\"format\":\"rackboot-catalog/1\",\"generated\":1,"
	                        "\"plain\":[],\"packages\":[],\"images\":[");
	for (size_t i = 0; i < n; i++) {
		memcpy(s + len, i ? ",{}" : "{}", i ? 3 : 2);
		len += i ? 3 : 2;
	}
	memcpy(s + len, "]}", 2);
	len += 2;
	assert_int_equal(img_catalog_parse(s, len, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "images: 100001 entries, more than 100000"));
	assert_int_equal(img_catalog_parse(s, IMG_CATALOG_MAX_SIZE + 1, &c, err, sizeof(err)),
	                 -EFBIG);
	free(s);
}

static void fill_image(struct img_cat_image *e, const char *name, const char *version)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->name, sizeof(e->name), "%s", name);
	snprintf(e->version, sizeof(e->version), "%s", version);
	snprintf(e->manifest, sizeof(e->manifest), "images/%s/%s.manifest.json", name, version);
	memcpy(e->manifest_sha256, H, 65);
	e->disk_size = 8589934592ULL;
	e->stored_bytes = 1234567;
}

static void test_round_trip(void **state)
{
	struct img_catalog *c, *back = NULL;
	struct img_cat_image im;
	struct img_cat_plain pl = { .name = "alma",
		                    .version = "9.4",
		                    .path = "plain/alma.img.gz",
		                    .kind = "raw.gz",
		                    .sha256 = H,
		                    .size = 1ULL << 33 };
	struct img_cat_package pk = { .name = "nvidia-driver",
		                      .version = "550.54-1",
		                      .arch = "amd64",
		                      .path = "pkgs/nvidia-driver_550.54-1_amd64.tar.zst",
		                      .sha256 = H,
		                      .size = 99 };
	char *s1, *s2, err[256] = "", ver[16];
	char dep0[] = "libc6 (>= 2.36)", dep1[] = "nvidia-kmod";
	char *deps[] = { dep0, dep1 }, *confl[] = { (char *)"nouveau" };
	size_t n1, n2;

	assert_int_equal(img_catalog_new(&c), 0);
	c->generated = -5;
	for (int i = 0; i < 40; i++) {
		snprintf(ver, sizeof(ver), "%d", i);
		fill_image(&im, "deb", ver);
		assert_int_equal(img_catalog_add_image(c, &im), 0);
	}
	assert_int_equal(img_catalog_add_plain(c, &pl), 0);
	assert_int_equal(img_catalog_add_package(c, &pk), 0);
	memcpy(pk.arch, "arm64", 6);
	assert_int_equal(img_catalog_add_package(c, &pk), 0); /* another arch: a second entry */
	assert_int_equal(c->n_packages, 2);
	/* the arm64 one gains relations: replaced in place, the lists copied in */
	pk.depends = deps;
	pk.n_depends = 2;
	pk.conflicts = confl;
	pk.n_conflicts = 1;
	assert_int_equal(img_catalog_add_package(c, &pk), 0);
	assert_int_equal(img_catalog_add_package(c, &pk), 0); /* again: old lists freed */
	assert_int_equal(c->n_packages, 2);
	dep1[0] = 'X'; /* the catalogue holds its own copy */
	assert_string_equal(c->packages[1].depends[1], "nvidia-kmod");
	assert_true(c->packages[1].depends != deps);
	/* a malformed relation is refused on add, and leaves the entry as it was */
	confl[0] = (char *)"nouveau (> 1)";
	assert_int_equal(img_catalog_add_package(c, &pk), -EINVAL);
	assert_string_equal(c->packages[1].conflicts[0], "nouveau");
	/* same name+version replaces */
	fill_image(&im, "deb", "7");
	im.stored_bytes = 42;
	assert_int_equal(img_catalog_add_image(c, &im), 0);
	assert_int_equal(c->n_images, 40);
	assert_true(img_catalog_find_image(c, "deb", "7")->stored_bytes == 42);
	assert_null(img_catalog_find_image(c, "deb", "77"));
	assert_non_null(img_catalog_find_plain(c, "alma", "9.4"));
	assert_int_equal(img_catalog_remove_image(c, "deb", "0"), 0);
	assert_int_equal(img_catalog_remove_image(c, "deb", "0"), -ENOENT);
	assert_int_equal(c->n_images, 39);
	/* invalid entries are refused on add */
	fill_image(&im, "deb", "x");
	memcpy(im.manifest, "../x", 5);
	assert_int_equal(img_catalog_add_image(c, &im), -EINVAL);
	memcpy(pl.kind, "vmdk", 5);
	assert_int_equal(img_catalog_add_plain(c, &pl), -EINVAL);

	assert_int_equal(img_catalog_serialize(c, &s1, &n1), 0);
	assert_int_equal(strncmp(s1, "{\"format\":\"rackboot-catalog/1\",\"generated\":-5,", 46),
	                 0);
	if (img_catalog_parse(s1, n1, &back, err, sizeof(err)) != 0)
		fail_msg("own output refused: %s", err);
	assert_int_equal(back->n_images, c->n_images);
	assert_memory_equal(back->images, c->images, c->n_images * sizeof(*c->images));
	assert_int_equal(back->n_plain, 1);
	assert_memory_equal(back->plain, c->plain, sizeof(*c->plain));
	assert_int_equal(back->n_packages, 2);
	assert_memory_equal(back->packages, c->packages, 1 * sizeof(*c->packages)); /* no lists */
	assert_string_equal(back->packages[1].version, "550.54-1");
	assert_int_equal(back->packages[1].n_depends, 2);
	assert_string_equal(back->packages[1].depends[0], "libc6 (>= 2.36)");
	assert_string_equal(back->packages[1].depends[1], "nvidia-kmod");
	assert_int_equal(back->packages[1].n_conflicts, 1);
	assert_string_equal(back->packages[1].conflicts[0], "nouveau");
	/* empty lists are not written: the amd64 entry reads as before relations */
	assert_non_null(strstr(s1, "\"size\":99},{"));
	assert_non_null(strstr(s1, "\"size\":99,\"depends\":[\"libc6 (>= 2.36)\",\"nvidia-kmod\"],"
	                           "\"conflicts\":[\"nouveau\"]}"));
	assert_int_equal(img_catalog_serialize(back, &s2, &n2), 0);
	assert_int_equal(n1, n2);
	assert_memory_equal(s1, s2, n1);
	/* a parsed catalogue can still grow */
	for (int i = 100; i < 140; i++) {
		snprintf(ver, sizeof(ver), "%d", i);
		fill_image(&im, "deb", ver);
		assert_int_equal(img_catalog_add_image(back, &im), 0);
	}
	assert_int_equal(back->n_images, 79);
	free(s1);
	free(s2);
	img_catalog_free(c);
	img_catalog_free(back);
	img_catalog_free(NULL);
}

#define FLAGGED_P PKGR("p", "1", "\"allow\":[\"fifos\",\"setuid\"],\"reboot\":true")
#define FLAGGED_Q PKGR("q", "1", "\"allow\":[\"devices\"]")
#define FLAGGED_R PKGR("r", "1", "\"allow\":[],\"reboot\":false")

/* allow and reboot: parsed to bits, written in one order and only when
 * set, kept through add/replace, unknown bits refused on add. */
static void test_allow_reboot(void **state)
{
	static const char in[] = CAT("", "", FLAGGED_P "," FLAGGED_Q "," FLAGGED_R);
	struct img_catalog *c = NULL, *back = NULL;
	struct img_cat_package pk;
	char err[256] = "", *s1, *s2;
	size_t n1, n2;

	(void)state;
	if (img_catalog_parse(in, strlen(in), &c, err, sizeof(err)) != 0)
		fail_msg("refused: %s", err);
	assert_int_equal(c->packages[0].allow, IMG_PKG_ALLOW_FIFOS | IMG_PKG_ALLOW_SETUID);
	assert_true(c->packages[0].reboot);
	assert_int_equal(c->packages[1].allow, IMG_PKG_ALLOW_DEVICES);
	assert_false(c->packages[1].reboot);
	assert_int_equal(c->packages[2].allow, 0);
	assert_false(c->packages[2].reboot);
	assert_int_equal(img_catalog_serialize(c, &s1, &n1), 0);
	assert_non_null(
	        strstr(s1, "\"size\":77,\"reboot\":true,\"allow\":[\"setuid\",\"fifos\"]}"));
	assert_non_null(strstr(s1, "\"size\":77,\"allow\":[\"devices\"]}"));
	/* the empty list and false are not written: r reads as before they existed */
	assert_non_null(strstr(s1, "\"path\":\"pkgs/r\",\"sha256\":\"" H "\",\"size\":77}"));
	assert_int_equal(img_catalog_parse(s1, n1, &back, err, sizeof(err)), 0);
	assert_int_equal(img_catalog_serialize(back, &s2, &n2), 0);
	assert_int_equal(n1, n2);
	assert_memory_equal(s1, s2, n1);
	/* replacing an entry replaces its flags too */
	pk = c->packages[0];
	pk.allow = IMG_PKG_ALLOW_DEVICES;
	pk.reboot = false;
	assert_int_equal(img_catalog_add_package(back, &pk), 0);
	assert_int_equal(back->n_packages, 3);
	assert_int_equal(back->packages[0].allow, IMG_PKG_ALLOW_DEVICES);
	assert_false(back->packages[0].reboot);
	pk.allow = 0x8;
	assert_int_equal(img_catalog_add_package(back, &pk), -EINVAL);
	assert_int_equal(back->packages[0].allow, IMG_PKG_ALLOW_DEVICES);
	back->packages[1].allow = 0x10;
	assert_int_equal(img_catalog_validate(back, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "packages[1].allow: unknown bits 0x10"));
	free(s1);
	free(s2);
	img_catalog_free(c);
	img_catalog_free(back);
}

static void test_allow_parse(void **state)
{
	static const struct {
		const char *in;
		int r;
		unsigned bits;
	} v[] = {
		{ "setuid", 0, IMG_PKG_ALLOW_SETUID },
		{ "devices", 0, IMG_PKG_ALLOW_DEVICES },
		{ "fifos", 0, IMG_PKG_ALLOW_FIFOS },
		{ "setuid,devices", 0, IMG_PKG_ALLOW_SETUID | IMG_PKG_ALLOW_DEVICES },
		{ "fifos,setuid,devices,setuid", 0, IMG_PKG_ALLOW_ALL },
		{ "", -EINVAL, 0 },
		{ "setuid,", -EINVAL, 0 },
		{ ",setuid", -EINVAL, 0 },
		{ "setuid devices", -EINVAL, 0 },
		{ "setgid", -EINVAL, 0 },
		{ "SETUID", -EINVAL, 0 },
		{ "device", -EINVAL, 0 },
		{ "sockets", -EINVAL, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		unsigned bits = 0xdead;
		char err[160] = "";
		int r = img_pkg_allow_parse(v[i].in, &bits, err, sizeof(err));

		if (r != v[i].r)
			fail_msg("\"%s\": r=%d, expected %d", v[i].in, r, v[i].r);
		if (r == 0)
			assert_int_equal(bits, v[i].bits);
		else
			assert_true(bits == 0xdead &&
			            strstr(err, "not one of setuid, devices, fifos"));
	}
	assert_string_equal(img_pkg_allow_word(IMG_PKG_ALLOW_DEVICES), "devices");
	assert_null(img_pkg_allow_word(IMG_PKG_ALLOW_SETUID | IMG_PKG_ALLOW_FIFOS));
	assert_null(img_pkg_allow_word(0));
}

/* The rule the agent and pkg build share: what each member mode needs. */
static void test_mode_check(void **state)
{
	static const struct {
		unsigned mode, allow;
		int r;
		const char *word, *why;
	} v[] = {
		{ S_IFREG | 0755, 0, 0, NULL, "" },
		{ S_IFDIR | 01777, 0, 0, NULL, "" }, /* sticky is fine */
		{ S_IFLNK | 0777, 0, 0, NULL, "" },
		{ S_IFLNK | 06777, 0, 0, NULL, "" }, /* a symlink's bits mean nothing */
		{ S_IFREG | 04755, 0, -EPERM, "setuid", "is setuid (mode 4755)" },
		{ S_IFREG | 02755, IMG_PKG_ALLOW_DEVICES, -EPERM, "setuid",
		  "is setgid (mode 2755)" },
		{ S_IFDIR | 02775, 0, -EPERM, "setuid", "is setgid (mode 2775)" },
		{ S_IFREG | 06755, IMG_PKG_ALLOW_SETUID, 0, NULL, "" },
		{ S_IFCHR | 0666, IMG_PKG_ALLOW_SETUID, -EPERM, "devices",
		  "is a character device" },
		{ S_IFBLK | 0660, IMG_PKG_ALLOW_FIFOS, -EPERM, "devices", "is a block device" },
		{ S_IFCHR | 0666, IMG_PKG_ALLOW_DEVICES, 0, NULL, "" },
		{ S_IFCHR | 04666, IMG_PKG_ALLOW_DEVICES, -EPERM, "setuid",
		  "is setuid (mode 4666)" },
		{ S_IFIFO | 0644, IMG_PKG_ALLOW_DEVICES, -EPERM, "fifos", "is a FIFO" },
		{ S_IFIFO | 0644, IMG_PKG_ALLOW_FIFOS, 0, NULL, "" },
		{ S_IFSOCK | 0755, IMG_PKG_ALLOW_ALL, -EINVAL, NULL, "is a socket" },
		{ 0755, IMG_PKG_ALLOW_ALL, -EINVAL, NULL, "is a file of unknown type" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		const char *word = NULL;
		char why[64] = "";
		int r = img_pkg_mode_check(v[i].mode, v[i].allow, &word, why, sizeof(why));

		if (r != v[i].r || strcmp(why, v[i].why) != 0 ||
		    (v[i].word ? !word || strcmp(word, v[i].word) : word != NULL))
			fail_msg("vector %zu (mode %o allow %u): r=%d word=%s why=\"%s\"", i,
			         v[i].mode, v[i].allow, r, word ? word : "-", why);
	}
	assert_int_equal(img_pkg_mode_needs(S_IFBLK | 02600),
	                 IMG_PKG_ALLOW_DEVICES | IMG_PKG_ALLOW_SETUID);
	assert_int_equal(img_pkg_mode_needs(S_IFSOCK), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts),         cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_relation_limits), cmocka_unit_test(test_huge_count),
		cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_allow_reboot),
		cmocka_unit_test(test_allow_parse),     cmocka_unit_test(test_mode_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
