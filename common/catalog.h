/* Repository catalogue (format "rackboot-catalog/1"): the signed index of
 * images (by manifest hash), plain images a site already has, and package
 * archives. Strict bounded parsing like the manifest; pure, no I/O. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/manifest.h" /* img_name_is_valid(), img_json_load() */

#define IMG_CATALOG_FORMAT      "rackboot-catalog/1"
#define IMG_CATALOG_MAX_SIZE    (64ULL * 1024 * 1024)
#define IMG_CATALOG_MAX_ENTRIES 100000
#define IMG_CAT_PATH_MAX        256

struct img_cat_image {
	char name[65], version[65];
	char manifest[IMG_CAT_PATH_MAX]; /* "images/<name>/<version>.manifest.json" */
	char manifest_sha256[65];
	uint64_t disk_size;
	uint64_t stored_bytes;
};

struct img_cat_plain {
	char name[65], version[65];
	char path[IMG_CAT_PATH_MAX]; /* "plain/..." */
	char kind[8];                /* raw raw.gz raw.xz raw.zst tar tar.gz tar.xz tar.zst */
	char sha256[65];
	uint64_t size;
};

/* Package relations: "name" or "name (OP version)", OP one of = >= <= >> <<
 * (Debian's spelling), name as img_name_is_valid(), version as
 * img_pkg_version_is_valid(). */
#define IMG_CAT_REL_MAX 64  /* entries per list */
#define IMG_CAT_REL_LEN 128 /* bytes per entry */

enum img_dep_op { IMG_DEP_ANY, IMG_DEP_EQ, IMG_DEP_GE, IMG_DEP_LE, IMG_DEP_GT, IMG_DEP_LT };

struct img_dep {
	char name[65];
	enum img_dep_op op;
	char version[65]; /* "" for IMG_DEP_ANY */
};

/* What a package's signed entry lets its archive hold beyond directories,
 * plain files, symlinks and hard links ("allow": a list of these words,
 * each at most once; absent = none). An unknown word is a parse error: a
 * catalogue that grants something this agent cannot judge is refused
 * whole, not half understood. */
#define IMG_PKG_ALLOW_SETUID  0x1u /* "setuid": the setuid or setgid bit */
#define IMG_PKG_ALLOW_DEVICES 0x2u /* "devices": character and block device nodes */
#define IMG_PKG_ALLOW_FIFOS   0x4u /* "fifos": named pipes */
#define IMG_PKG_ALLOW_ALL     0x7u

struct img_cat_package {
	char name[65], version[65];
	char arch[33];
	char path[IMG_CAT_PATH_MAX]; /* "pkgs/..." */
	char sha256[65];
	uint64_t size;
	/* Optional (absent in the JSON = empty). Each list is one allocation
	 * (pointers then strings) owned by whoever holds the entry: the
	 * catalogue for its own entries, which img_catalog_add_package() copies
	 * in. NULL when empty. */
	char **depends;
	size_t n_depends;
	char **conflicts;
	size_t n_conflicts;
	unsigned allow; /* IMG_PKG_ALLOW_* ("allow": [...], written only when not 0) */
	bool reboot;    /* "reboot": true: installing, upgrading or removing it
	                   needs a reboot (a kernel, a driver); written only when true */
};

struct img_catalog {
	int64_t generated;
	struct img_cat_image *images;
	size_t n_images;
	struct img_cat_plain *plain;
	size_t n_plain;
	struct img_cat_package *packages;
	size_t n_packages;
};

int img_catalog_new(struct img_catalog **ret);
void img_catalog_free(struct img_catalog *c);

/* -EINVAL with a message naming the field and index; -EFBIG over the cap. */
int img_catalog_parse(const char *data, size_t len, struct img_catalog **ret, char *err,
                      size_t errlen);
/* Compact JSON, NUL-terminated; caller frees *ret. -EINVAL if invalid. */
int img_catalog_serialize(const struct img_catalog *c, char **ret, size_t *ret_len);
int img_catalog_validate(const struct img_catalog *c, char *err, size_t errlen);

/* Add or replace (same name+version replaces the entry in place). The
 * entry is copied and checked: -EINVAL if a field is malformed. */
int img_catalog_add_image(struct img_catalog *c, const struct img_cat_image *e);
int img_catalog_add_plain(struct img_catalog *c, const struct img_cat_plain *e);
int img_catalog_add_package(struct img_catalog *c, const struct img_cat_package *e);

/* A package version: [A-Za-z0-9._+~-]{1,64}, not starting with '.': a
 * manifest name plus '~' (sorts before everything, as in 1.0~rc1). */
bool img_pkg_version_is_valid(const char *s);

/* dpkg's order: [epoch:]upstream[-revision], each compared as runs of
 * non-digits (letters before other characters, '~' before everything, even
 * the end) and numbers. <0, 0, >0 as strcmp. Never fails: any string has a
 * place in the order. (The agent's resolver and rackbootd's plan share it.) */
int img_pkg_version_cmp(const char *a, const char *b);

/* Parses one relation string: 0, or -EINVAL if it does not follow the
 * grammar above exactly (one space before '(', one after OP). */
int img_dep_parse(const char *s, struct img_dep *ret);
/* The operator as written in a relation ("=", ">=", ...; "" for ANY). */
const char *img_dep_op_str(enum img_dep_op op);

/* Copies a relation list into one allocation (see struct img_cat_package):
 * *ret NULL when n is 0; -E2BIG over IMG_CAT_REL_MAX. Does not validate
 * the strings. */
int img_cat_rel_dup(char *const *src, size_t n, char ***ret);

/* "setuid,devices" (comma separated, as on rackboot-image's command line)
 * to IMG_PKG_ALLOW_* bits: 0, or -EINVAL naming the unknown word in err. */
int img_pkg_allow_parse(const char *list, unsigned *ret, char *err, size_t errlen);
/* The word of one IMG_PKG_ALLOW_* bit; NULL for anything else. */
const char *img_pkg_allow_word(unsigned bit);
/* What a package archive member with this mode (file type and permission
 * bits, as st_mode) needs from its entry's allow: 0 for a directory,
 * regular file or symlink without setuid/setgid, else the IMG_PKG_ALLOW_*
 * bits; -EINVAL for what no package may hold (a socket, an unknown type). */
int img_pkg_mode_needs(uint32_t mode);
/* img_pkg_mode_needs() against allow: 0 if the member may be installed;
 * -EPERM with *ret_word the word allow lacks, or -EINVAL (never allowed);
 * both with what it is in why ("is setuid (mode 4755)", "is a character
 * device", "is a FIFO", "is a socket", ...). */
int img_pkg_mode_check(uint32_t mode, unsigned allow, const char **ret_word, char *why,
                       size_t whylen);

/* Removes an image entry: 0, or -ENOENT. */
int img_catalog_remove_image(struct img_catalog *c, const char *name, const char *version);

/* NULL if absent. */
const struct img_cat_image *img_catalog_find_image(const struct img_catalog *c, const char *name,
                                                   const char *version);
const struct img_cat_plain *img_catalog_find_plain(const struct img_catalog *c, const char *name,
                                                   const char *version);
