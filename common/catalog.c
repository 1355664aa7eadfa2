/* Repository catalogue: struct <-> JSON for format rackboot-catalog/1.
 *
 * The three entry kinds (images, plain images, packages) are described by
 * field tables (name, JSON type, offset, size, checker) and parsed,
 * validated and serialised by one generic loop, so a rule is written once
 * and cannot differ between reading and writing. Every path must be
 * relative and pass rb_path_is_safe() below its section's directory; no two
 * entries of a section share name+version (name+version+arch for packages).
 * Packages also carry two optional relation lists (depends, conflicts),
 * handled beside the table because they are arrays the entry owns: absent
 * means empty, and an empty list is not written, so a catalogue without
 * relations reads and writes exactly as before they existed. The same
 * holds for a package's "allow" list (what its archive may hold beyond
 * plain files: setuid/setgid bits, device nodes, FIFOs; kept as bits, an
 * unknown word refused) and its "reboot" flag (a boolean).
 *
 * Pure: no I/O, no logging. Input size and entry counts are capped before
 * allocation. Unknown top-level keys are ignored (forward compatible); a
 * different format string is refused. */
#include "common/catalog.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/util.h"

#define SIZE_LIMIT (1ULL << 56)

enum ftype { F_NAME, F_PKGVER, F_ARCH, F_SHA, F_PATH, F_KIND, F_DISK, F_U64 };

struct field {
	const char *key;
	enum ftype type;
	size_t off, size;
	const char *prefix; /* F_PATH: the section's directory */
};

#define FLD(st, k, t, m, p)                                                                        \
	{                                                                                          \
		k, t, offsetof(st, m), sizeof(((st *)0)->m), p                                     \
	}

static const struct field image_fields[] = {
	FLD(struct img_cat_image, "name", F_NAME, name, NULL),
	FLD(struct img_cat_image, "version", F_NAME, version, NULL),
	FLD(struct img_cat_image, "manifest", F_PATH, manifest, "images/"),
	FLD(struct img_cat_image, "manifest_sha256", F_SHA, manifest_sha256, NULL),
	FLD(struct img_cat_image, "disk_size", F_DISK, disk_size, NULL),
	FLD(struct img_cat_image, "stored_bytes", F_U64, stored_bytes, NULL),
};

static const struct field plain_fields[] = {
	FLD(struct img_cat_plain, "name", F_NAME, name, NULL),
	FLD(struct img_cat_plain, "version", F_NAME, version, NULL),
	FLD(struct img_cat_plain, "path", F_PATH, path, "plain/"),
	FLD(struct img_cat_plain, "kind", F_KIND, kind, NULL),
	FLD(struct img_cat_plain, "sha256", F_SHA, sha256, NULL),
	FLD(struct img_cat_plain, "size", F_U64, size, NULL),
};

static const struct field package_fields[] = {
	FLD(struct img_cat_package, "name", F_NAME, name, NULL),
	FLD(struct img_cat_package, "version", F_PKGVER, version, NULL),
	FLD(struct img_cat_package, "arch", F_ARCH, arch, NULL),
	FLD(struct img_cat_package, "path", F_PATH, path, "pkgs/"),
	FLD(struct img_cat_package, "sha256", F_SHA, sha256, NULL),
	FLD(struct img_cat_package, "size", F_U64, size, NULL),
};

struct section {
	const char *key;
	const struct field *fields;
	size_t n_fields;
	size_t entry_size;
	size_t items_off, count_off; /* in struct img_catalog */
	bool dup_arch;               /* duplicates judged on name+version+arch */
	bool relations;              /* entries are img_cat_package (depends, conflicts) */
};

static const struct section sections[] = {
	{ "images", image_fields, RB_ARRAY_SIZE(image_fields), sizeof(struct img_cat_image),
	  offsetof(struct img_catalog, images), offsetof(struct img_catalog, n_images), false,
	  false },
	{ "plain", plain_fields, RB_ARRAY_SIZE(plain_fields), sizeof(struct img_cat_plain),
	  offsetof(struct img_catalog, plain), offsetof(struct img_catalog, n_plain), false,
	  false },
	{ "packages", package_fields, RB_ARRAY_SIZE(package_fields), sizeof(struct img_cat_package),
	  offsetof(struct img_catalog, packages), offsetof(struct img_catalog, n_packages), true,
	  true },
};

static const char *const kinds[] = { "raw", "raw.gz", "raw.xz", "raw.zst",
	                             "tar", "tar.gz", "tar.xz", "tar.zst" };

static void **items_of(struct img_catalog *c, const struct section *s)
{
	return (void **)((char *)c + s->items_off);
}

static size_t *count_of(struct img_catalog *c, const struct section *s)
{
	return (size_t *)((char *)c + s->count_off);
}

static const void *citems_of(const struct img_catalog *c, const struct section *s)
{
	return *(void *const *)((const char *)c + s->items_off);
}

static size_t ccount_of(const struct img_catalog *c, const struct section *s)
{
	return *(const size_t *)((const char *)c + s->count_off);
}

/* Implicit capacity as in manifest.c: 0, or max(16, next power of two). */
static size_t implicit_cap(size_t n)
{
	size_t cap = 16;

	if (n == 0)
		return 0;
	while (cap < n)
		cap *= 2;
	return cap;
}

static int grow(void **arr, size_t n, size_t sz)
{
	size_t cap = implicit_cap(n);
	void *p;

	if (n < cap)
		return 0;
	cap = n == 0 ? 16 : cap * 2;
	if (cap > SIZE_MAX / sz)
		return -ENOMEM;
	p = realloc(*arr, cap * sz);
	if (!p)
		return -ENOMEM;
	*arr = p;
	return 0;
}

int img_catalog_new(struct img_catalog **ret)
{
	struct img_catalog *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	*ret = c;
	return 0;
}

void img_catalog_free(struct img_catalog *c)
{
	if (!c)
		return;
	free(c->images);
	free(c->plain);
	for (size_t i = 0; i < c->n_packages; i++) {
		free(c->packages[i].depends);
		free(c->packages[i].conflicts);
	}
	free(c->packages);
	free(c);
}

/* ---- validation ---- */

static bool kind_is_valid(const char *k)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(kinds); i++)
		if (!strcmp(k, kinds[i]))
			return true;
	return false;
}

/* ---- allow list, reboot flag ---- */

static const char *const allow_words[] = { "setuid", "devices", "fifos" }; /* bit i */

const char *img_pkg_allow_word(unsigned bit)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(allow_words); i++)
		if (bit == 1u << i)
			return allow_words[i];
	return NULL;
}

static unsigned allow_bit(const char *w, size_t n)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(allow_words); i++)
		if (strlen(allow_words[i]) == n && memcmp(w, allow_words[i], n) == 0)
			return 1u << i;
	return 0;
}

int img_pkg_allow_parse(const char *list, unsigned *ret, char *err, size_t errlen)
{
	unsigned bits = 0;

	for (const char *s = list;;) {
		const char *comma = strchr(s, ',');
		size_t n = comma ? (size_t)(comma - s) : strlen(s);
		unsigned b = allow_bit(s, n);

		if (!b)
			return rb_errf(err, errlen,
			               "\"%.*s\": not one of setuid, devices, fifos (comma "
			               "separated)",
			               (int)RB_MIN(n, 64), s);
		bits |= b;
		if (!comma)
			break;
		s = comma + 1;
	}
	*ret = bits;
	return 0;
}

int img_pkg_mode_needs(uint32_t mode)
{
	unsigned need = (mode & (S_ISUID | S_ISGID)) ? IMG_PKG_ALLOW_SETUID : 0;

	switch (mode & S_IFMT) {
	case S_IFDIR:
	case S_IFREG:
		return (int)need;
	case S_IFLNK:
		return 0; /* a symlink's mode bits mean nothing on Linux */
	case S_IFCHR:
	case S_IFBLK:
		return (int)(need | IMG_PKG_ALLOW_DEVICES);
	case S_IFIFO:
		return (int)(need | IMG_PKG_ALLOW_FIFOS);
	default:
		return -EINVAL;
	}
}

int img_pkg_mode_check(uint32_t mode, unsigned allow, const char **ret_word, char *why,
                       size_t whylen)
{
	int need = img_pkg_mode_needs(mode);
	unsigned lack;

	if (need < 0) {
		snprintf(why, whylen, "is a %s",
		         (mode & S_IFMT) == S_IFSOCK ? "socket" : "file of unknown type");
		return -EINVAL;
	}
	lack = (unsigned)need & ~allow;
	if (lack & IMG_PKG_ALLOW_DEVICES) {
		snprintf(why, whylen, "is a %s device",
		         (mode & S_IFMT) == S_IFCHR ? "character" : "block");
		*ret_word = img_pkg_allow_word(IMG_PKG_ALLOW_DEVICES);
	} else if (lack & IMG_PKG_ALLOW_FIFOS) {
		snprintf(why, whylen, "is a FIFO");
		*ret_word = img_pkg_allow_word(IMG_PKG_ALLOW_FIFOS);
	} else if (lack & IMG_PKG_ALLOW_SETUID) {
		snprintf(why, whylen, "is %s (mode %04o)", (mode & S_ISUID) ? "setuid" : "setgid",
		         (unsigned)(mode & 07777));
		*ret_word = img_pkg_allow_word(IMG_PKG_ALLOW_SETUID);
	} else {
		return 0;
	}
	return -EPERM;
}

/* Optional "allow" (array of known words, each once) and "reboot"
 * (boolean) of a package. */
static int parse_allow_reboot(json_t *obj, struct img_cat_package *p, const char *where, char *err,
                              size_t errlen)
{
	json_t *arr = json_object_get(obj, "allow"), *rb = json_object_get(obj, "reboot"), *v;
	size_t i;

	p->allow = 0;
	p->reboot = false;
	if (rb) {
		if (!json_is_boolean(rb))
			return rb_errf(err, errlen, "%s.reboot: expected true or false", where);
		p->reboot = json_is_true(rb);
	}
	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return rb_errf(err, errlen, "%s.allow: expected an array of setuid, devices, fifos",
		               where);
	json_array_foreach(arr, i, v)
	{
		unsigned b = json_is_string(v)
		                     ? allow_bit(json_string_value(v), json_string_length(v))
		                     : 0;

		if (!b)
			return rb_errf(err, errlen,
			               "%s.allow[%zu]: not one of \"setuid\", \"devices\", "
			               "\"fifos\" (a newer rackboot-image?)",
			               where, i);
		if (p->allow & b)
			return rb_errf(err, errlen, "%s.allow[%zu]: \"%s\" given twice", where, i,
			               img_pkg_allow_word(b));
		p->allow |= b;
	}
	return 0;
}

static int allow_reboot_json(json_t *o, const struct img_cat_package *p)
{
	json_t *arr;

	if (p->reboot && json_object_set_new(o, "reboot", json_true()) < 0)
		return -ENOMEM;
	if (p->allow == 0)
		return 0;
	arr = json_array();
	if (!arr || json_object_set_new(o, "allow", arr) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < RB_ARRAY_SIZE(allow_words); i++)
		if ((p->allow & (1u << i)) &&
		    json_array_append_new(arr, json_string(allow_words[i])) < 0)
			return -ENOMEM;
	return 0;
}

/* ---- relations ---- */

static const char *const dep_ops[] = { "", "=", ">=", "<=", ">>", "<<" };

const char *img_dep_op_str(enum img_dep_op op)
{
	return (size_t)op < RB_ARRAY_SIZE(dep_ops) ? dep_ops[op] : "?";
}

bool img_pkg_version_is_valid(const char *s)
{
	size_t n = 0;

	if (!s || s[0] == '.' || s[0] == '\0')
		return false;
	for (; s[n]; n++) {
		char c = s[n];

		if (n >= 64)
			return false;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '+' || c == '-' || c == '~'))
			return false;
	}
	return true;
}

/* Copies [s, s+n) into dst[65] if it is a valid name (or version); false
 * otherwise. */
static bool take_name(const char *s, size_t n, char dst[65], bool version)
{
	if (n == 0 || n > 64)
		return false;
	memcpy(dst, s, n);
	dst[n] = '\0';
	return version ? img_pkg_version_is_valid(dst) : img_name_is_valid(dst);
}

int img_dep_parse(const char *s, struct img_dep *ret)
{
	struct img_dep d = { .op = IMG_DEP_ANY };
	const char *sp, *op, *ver, *end;
	size_t len;

	if (!s)
		return -EINVAL;
	len = strnlen(s, IMG_CAT_REL_LEN + 1);
	if (len == 0 || len > IMG_CAT_REL_LEN)
		return -EINVAL;
	sp = memchr(s, ' ', len);
	if (!sp) {
		if (!take_name(s, len, d.name, false))
			return -EINVAL;
		*ret = d;
		return 0;
	}
	/* "name (OP version)" */
	if (!take_name(s, (size_t)(sp - s), d.name, false) || sp[1] != '(')
		return -EINVAL;
	op = sp + 2;
	end = s + len;
	if (end - op < 4 || end[-1] != ')')
		return -EINVAL;
	for (size_t i = RB_ARRAY_SIZE(dep_ops) - 1; i > 0; i--) {
		size_t ol = strlen(dep_ops[i]);

		if (!strncmp(op, dep_ops[i], ol) && op[ol] == ' ') {
			d.op = (enum img_dep_op)i;
			ver = op + ol + 1;
			if (!take_name(ver, (size_t)(end - 1 - ver), d.version, true))
				return -EINVAL;
			*ret = d;
			return 0;
		}
	}
	return -EINVAL;
}

int img_cat_rel_dup(char *const *src, size_t n, char ***ret)
{
	size_t bytes = n * sizeof(char *);
	char **out, *p;

	if (n == 0) {
		*ret = NULL;
		return 0;
	}
	if (n > IMG_CAT_REL_MAX)
		return -E2BIG;
	for (size_t i = 0; i < n; i++)
		bytes += strlen(src[i]) + 1;
	out = malloc(bytes);
	if (!out)
		return -ENOMEM;
	p = (char *)(out + n);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(src[i]) + 1;

		memcpy(p, src[i], l);
		out[i] = p;
		p += l;
	}
	*ret = out;
	return 0;
}

static int check_rel_list(const char *where, const char *key, char *const *list, size_t n,
                          char *err, size_t errlen)
{
	struct img_dep d;

	if (n > IMG_CAT_REL_MAX)
		return rb_errf(err, errlen, "%s.%s: %zu entries, more than %d", where, key, n,
		               IMG_CAT_REL_MAX);
	if (n > 0 && !list)
		return rb_errf(err, errlen, "%s.%s: internal error (no list)", where, key);
	for (size_t i = 0; i < n; i++)
		if (!list[i] || img_dep_parse(list[i], &d) < 0)
			return rb_errf(err, errlen,
			               "%s.%s[%zu]: must be \"name\" or \"name (OP version)\" with "
			               "OP one of = >= <= >> << and at most %d bytes",
			               where, key, i, IMG_CAT_REL_LEN);
	return 0;
}

static int check_relations(const struct img_cat_package *p, const char *where, char *err,
                           size_t errlen)
{
	int r = check_rel_list(where, "depends", p->depends, p->n_depends, err, errlen);

	if (r < 0)
		return r;
	if (p->allow & ~IMG_PKG_ALLOW_ALL)
		return rb_errf(err, errlen, "%s.allow: unknown bits 0x%x", where,
		               p->allow & ~IMG_PKG_ALLOW_ALL);
	return check_rel_list(where, "conflicts", p->conflicts, p->n_conflicts, err, errlen);
}

/* Reads an optional array of relation strings into one allocation. */
static int parse_rel_list(json_t *obj, const char *key, const char *where, char ***ret,
                          size_t *ret_n, char *err, size_t errlen)
{
	const char *tmp[IMG_CAT_REL_MAX];
	json_t *arr = json_object_get(obj, key), *v;
	size_t i, n;
	struct img_dep d;

	*ret = NULL;
	*ret_n = 0;
	if (!arr)
		return 0;
	if (!json_is_array(arr))
		return rb_errf(err, errlen, "%s.%s: expected an array of strings", where, key);
	n = json_array_size(arr);
	if (n > IMG_CAT_REL_MAX)
		return rb_errf(err, errlen, "%s.%s: %zu entries, more than %d", where, key, n,
		               IMG_CAT_REL_MAX);
	json_array_foreach(arr, i, v)
	{
		if (!json_is_string(v))
			return rb_errf(err, errlen, "%s.%s[%zu]: expected a string", where, key, i);
		if (json_string_length(v) > IMG_CAT_REL_LEN ||
		    strlen(json_string_value(v)) != json_string_length(v) ||
		    img_dep_parse(json_string_value(v), &d) < 0)
			return rb_errf(err, errlen,
			               "%s.%s[%zu]: must be \"name\" or \"name (OP version)\" with "
			               "OP one of = >= <= >> << and at most %d bytes",
			               where, key, i, IMG_CAT_REL_LEN);
		tmp[i] = json_string_value(v);
	}
	*ret_n = n;
	return img_cat_rel_dup((char *const *)tmp, n, ret);
}

static int rel_json(json_t *o, const char *key, char *const *list, size_t n)
{
	json_t *arr;

	if (n == 0)
		return 0;
	arr = json_array();
	if (!arr || json_object_set_new(o, key, arr) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (json_array_append_new(arr, json_string(list[i])) < 0)
			return -ENOMEM;
	return 0;
}

static int check_field(const struct field *f, const void *entry, const char *where, char *err,
                       size_t errlen)
{
	const char *s = (const char *)entry + f->off;
	uint64_t v;

	if (f->type == F_DISK || f->type == F_U64) {
		memcpy(&v, s, sizeof(v));
		if (f->type == F_DISK && (v == 0 || v > IMG_DISK_SIZE_MAX || v % 512 != 0))
			return rb_errf(err, errlen,
			               "%s.%s: %" PRIu64
			               " must be > 0, <= 2^50 and a multiple of 512",
			               where, f->key, v);
		if (v > SIZE_LIMIT)
			return rb_errf(err, errlen, "%s.%s: %" PRIu64 " out of range", where,
			               f->key, v);
		return 0;
	}
	if (!memchr(s, '\0', f->size))
		return rb_errf(err, errlen, "%s.%s: not terminated", where, f->key);
	switch (f->type) {
	case F_NAME:
	case F_ARCH:
		if (!img_name_is_valid(s) || strlen(s) >= f->size)
			return rb_errf(
			        err, errlen,
			        "%s.%s: must match [A-Za-z0-9._+-]{1,%zu}, not start with '.'",
			        where, f->key, f->size - 1);
		return 0;
	case F_PKGVER:
		if (!img_pkg_version_is_valid(s))
			return rb_errf(
			        err, errlen,
			        "%s.%s: must match [A-Za-z0-9._+~-]{1,64}, not start with '.'",
			        where, f->key);
		return 0;
	case F_SHA:
		if (!img_sha256_hex_is_valid(s))
			return rb_errf(err, errlen, "%s.%s: not 64 lowercase hex characters", where,
			               f->key);
		return 0;
	case F_PATH:
		if (!rb_path_is_safe(s) || strncmp(s, f->prefix, strlen(f->prefix)) != 0 ||
		    s[strlen(f->prefix)] == '\0')
			return rb_errf(err, errlen, "%s.%s: not a safe relative path below %s",
			               where, f->key, f->prefix);
		return 0;
	case F_KIND:
		if (!kind_is_valid(s))
			return rb_errf(err, errlen,
			               "%s.%s: must be one of raw raw.gz raw.xz raw.zst tar tar.gz "
			               "tar.xz tar.zst",
			               where, f->key);
		return 0;
	default:
		return rb_errf(err, errlen, "%s.%s: internal error", where, f->key);
	}
}

static int check_entry(const struct section *s, const void *entry, size_t i, char *err,
                       size_t errlen)
{
	char where[48];

	snprintf(where, sizeof(where), "%s[%zu]", s->key, i);
	for (size_t k = 0; k < s->n_fields; k++) {
		int r = check_field(&s->fields[k], entry, where, err, errlen);

		if (r < 0)
			return r;
	}
	if (s->relations)
		return check_relations(entry, where, err, errlen);
	return 0;
}

/* name and version are the first two fields of every entry type; arch the
 * third of a package. */
static int entry_cmp(const struct section *s, const void *a, const void *b)
{
	const char *x = a, *y = b;
	int r;

	r = strcmp(x + s->fields[0].off, y + s->fields[0].off);
	if (r == 0)
		r = strcmp(x + s->fields[1].off, y + s->fields[1].off);
	if (r == 0 && s->dup_arch)
		r = strcmp(x + s->fields[2].off, y + s->fields[2].off);
	return r;
}

static int cmp_idx(const void *a, const void *b, void *arg)
{
	const char *const *x = a, *const *y = b;

	return entry_cmp(arg, *x, *y);
}

static int check_duplicates(const struct section *s, const char *items, size_t n, char *err,
                            size_t errlen)
{
	const char **sorted;
	int r = 0;

	if (n < 2)
		return 0;
	sorted = malloc(n * sizeof(*sorted));
	if (!sorted)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		sorted[i] = items + i * s->entry_size;
	qsort_r(sorted, n, sizeof(*sorted), cmp_idx, (void *)s);
	for (size_t i = 1; i < n; i++) {
		if (entry_cmp(s, sorted[i - 1], sorted[i]) == 0) {
			size_t a = (size_t)(sorted[i - 1] - items) / s->entry_size;
			size_t b = (size_t)(sorted[i] - items) / s->entry_size;

			r = rb_errf(err, errlen, "%s[%zu]: duplicate of %s[%zu] (%s %s)", s->key,
			            RB_MAX(a, b), s->key, RB_MIN(a, b),
			            sorted[i] + s->fields[0].off, sorted[i] + s->fields[1].off);
			break;
		}
	}
	free(sorted);
	return r;
}

int img_catalog_validate(const struct img_catalog *c, char *err, size_t errlen)
{
	for (size_t si = 0; si < RB_ARRAY_SIZE(sections); si++) {
		const struct section *s = &sections[si];
		const char *items = citems_of(c, s);
		size_t n = ccount_of(c, s);
		int r;

		if (n > IMG_CATALOG_MAX_ENTRIES)
			return rb_errf(err, errlen, "%s: %zu entries, more than %d", s->key, n,
			               IMG_CATALOG_MAX_ENTRIES);
		for (size_t i = 0; i < n; i++) {
			r = check_entry(s, items + i * s->entry_size, i, err, errlen);
			if (r < 0)
				return r;
		}
		r = check_duplicates(s, items, n, err, errlen);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- parsing ---- */

static int parse_field(const struct field *f, json_t *obj, void *entry, const char *where,
                       char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, f->key);
	char *dst = (char *)entry + f->off;

	if (!v)
		return rb_errf(err, errlen, "%s.%s: missing field", where, f->key);
	if (f->type == F_DISK || f->type == F_U64) {
		json_int_t x;
		uint64_t u;

		if (!json_is_integer(v))
			return rb_errf(err, errlen, "%s.%s: expected an integer", where, f->key);
		x = json_integer_value(v);
		if (x < 0)
			return rb_errf(err, errlen, "%s.%s: negative", where, f->key);
		u = (uint64_t)x;
		memcpy(dst, &u, sizeof(u));
		return 0;
	}
	if (!json_is_string(v))
		return rb_errf(err, errlen, "%s.%s: expected a string", where, f->key);
	if (json_string_length(v) >= f->size)
		return rb_errf(err, errlen, "%s.%s: longer than %zu bytes", where, f->key,
		               f->size - 1);
	if (memchr(json_string_value(v), '\0', json_string_length(v)))
		return rb_errf(err, errlen, "%s.%s: contains a NUL byte", where, f->key);
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

/* Both lists or neither: on failure the entry owns nothing. */
static int parse_relations(json_t *obj, struct img_cat_package *p, const char *where, char *err,
                           size_t errlen)
{
	char **dep, **con;
	size_t nd, nc;
	int r;

	r = parse_allow_reboot(obj, p, where, err, errlen);
	if (r < 0)
		return r;
	r = parse_rel_list(obj, "depends", where, &dep, &nd, err, errlen);
	if (r < 0)
		return r;
	r = parse_rel_list(obj, "conflicts", where, &con, &nc, err, errlen);
	if (r < 0) {
		free(dep);
		return r;
	}
	p->depends = dep;
	p->n_depends = nd;
	p->conflicts = con;
	p->n_conflicts = nc;
	return 0;
}

static int parse_section(const struct section *s, json_t *root, struct img_catalog *c, char *err,
                         size_t errlen)
{
	json_t *arr = json_object_get(root, s->key), *v;
	size_t i, n, cap;
	char *items;
	int r;

	if (!arr)
		return rb_errf(err, errlen, "%s: missing field", s->key);
	if (!json_is_array(arr))
		return rb_errf(err, errlen, "%s: expected an array", s->key);
	n = json_array_size(arr);
	if (n > IMG_CATALOG_MAX_ENTRIES)
		return rb_errf(err, errlen, "%s: %zu entries, more than %d", s->key, n,
		               IMG_CATALOG_MAX_ENTRIES);
	if (n == 0)
		return 0;
	cap = implicit_cap(n);
	items = calloc(cap, s->entry_size);
	if (!items)
		return -ENOMEM;
	*items_of(c, s) = items;
	json_array_foreach(arr, i, v)
	{
		char where[48];

		snprintf(where, sizeof(where), "%s[%zu]", s->key, i);
		if (!json_is_object(v))
			return rb_errf(err, errlen, "%s: expected an object", where);
		for (size_t k = 0; k < s->n_fields; k++) {
			r = parse_field(&s->fields[k], v, items + i * s->entry_size, where, err,
			                errlen);
			if (r < 0)
				return r;
		}
		if (s->relations) {
			r = parse_relations(
			        v, (struct img_cat_package *)(void *)(items + i * s->entry_size),
			        where, err, errlen);
			if (r < 0)
				return r;
		}
		(*count_of(c, s))++;
	}
	return 0;
}

static int parse_root(json_t *root, struct img_catalog *c, char *err, size_t errlen)
{
	json_t *format, *generated;
	int r;

	if (!json_is_object(root))
		return rb_errf(err, errlen, "catalog: expected a JSON object");
	format = json_object_get(root, "format");
	if (!format)
		return rb_errf(err, errlen, "format: missing field");
	if (!json_is_string(format) || strcmp(json_string_value(format), IMG_CATALOG_FORMAT) != 0)
		return rb_errf(err, errlen,
		               "format: not \"" IMG_CATALOG_FORMAT
		               "\" (made by a newer rackboot-image?)");
	generated = json_object_get(root, "generated");
	if (!generated)
		return rb_errf(err, errlen, "generated: missing field");
	if (!json_is_integer(generated))
		return rb_errf(err, errlen, "generated: expected an integer");
	c->generated = json_integer_value(generated);
	for (size_t si = 0; si < RB_ARRAY_SIZE(sections); si++) {
		r = parse_section(&sections[si], root, c, err, errlen);
		if (r < 0)
			return r;
	}
	return img_catalog_validate(c, err, errlen);
}

int img_catalog_parse(const char *data, size_t len, struct img_catalog **ret, char *err,
                      size_t errlen)
{
	struct img_catalog *c;
	json_t *root;
	int r;

	r = img_json_load(data, len, IMG_CATALOG_MAX_SIZE, "catalog", &root, err, errlen);
	if (r < 0)
		return r;
	r = img_catalog_new(&c);
	if (r < 0)
		goto out;
	r = parse_root(root, c, err, errlen);
	if (r < 0) {
		img_catalog_free(c);
		goto out;
	}
	*ret = c;
out:
	json_decref(root);
	return r;
}

/* ---- serialising ---- */

static json_t *entry_json(const struct section *s, const char *entry)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	for (size_t k = 0; k < s->n_fields; k++) {
		const struct field *f = &s->fields[k];
		json_t *v;

		if (f->type == F_DISK || f->type == F_U64) {
			uint64_t u;

			memcpy(&u, entry + f->off, sizeof(u));
			v = json_integer((json_int_t)u);
		} else {
			v = json_string(entry + f->off);
		}
		if (!v || json_object_set_new(o, f->key, v) < 0) {
			json_decref(o);
			return NULL;
		}
	}
	if (s->relations) {
		const struct img_cat_package *p = (const void *)entry;

		if (rel_json(o, "depends", p->depends, p->n_depends) < 0 ||
		    rel_json(o, "conflicts", p->conflicts, p->n_conflicts) < 0 ||
		    allow_reboot_json(o, p) < 0) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

int img_catalog_serialize(const struct img_catalog *c, char **ret, size_t *ret_len)
{
	json_t *root, *v;
	char *out;
	int r;

	r = img_catalog_validate(c, NULL, 0);
	if (r < 0)
		return r;
	root = json_object();
	if (!root)
		return -ENOMEM;
	v = json_string(IMG_CATALOG_FORMAT);
	if (!v || json_object_set_new(root, "format", v) < 0)
		goto err;
	v = json_integer(c->generated);
	if (!v || json_object_set_new(root, "generated", v) < 0)
		goto err;
	for (size_t si = 0; si < RB_ARRAY_SIZE(sections); si++) {
		const struct section *s = &sections[si];
		const char *items = citems_of(c, s);
		json_t *arr = json_array();

		if (!arr || json_object_set_new(root, s->key, arr) < 0)
			goto err;
		for (size_t i = 0; i < ccount_of(c, s); i++) {
			v = entry_json(s, items + i * s->entry_size);
			if (!v || json_array_append_new(arr, v) < 0)
				goto err;
		}
	}
	out = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!out)
		return -ENOMEM;
	*ret = out;
	*ret_len = strlen(out);
	return 0;
err:
	json_decref(root);
	return -ENOMEM;
}

/* ---- editing ---- */

/* Stores e at dst; a package's relation lists are copied, and those of the
 * entry it replaces (old, or NULL) freed only once the copy succeeded. */
static int store_entry(const struct section *s, void *dst, const void *e, bool replace)
{
	struct img_cat_package p;
	int r;

	if (!s->relations) {
		memcpy(dst, e, s->entry_size);
		return 0;
	}
	memcpy(&p, e, sizeof(p));
	r = img_cat_rel_dup(p.depends, p.n_depends, &p.depends);
	if (r < 0)
		return r;
	r = img_cat_rel_dup(p.conflicts, p.n_conflicts, &p.conflicts);
	if (r < 0) {
		free(p.depends);
		return r;
	}
	if (replace) {
		free(((struct img_cat_package *)dst)->depends);
		free(((struct img_cat_package *)dst)->conflicts);
	}
	memcpy(dst, &p, sizeof(p));
	return 0;
}

static int add_entry(struct img_catalog *c, const struct section *s, const void *e)
{
	char **items = (char **)items_of(c, s);
	size_t *n = count_of(c, s);
	int r;

	r = check_entry(s, e, *n, NULL, 0);
	if (r < 0)
		return r;
	for (size_t i = 0; i < *n; i++)
		if (entry_cmp(s, *items + i * s->entry_size, e) == 0)
			return store_entry(s, *items + i * s->entry_size, e, true);
	if (*n >= IMG_CATALOG_MAX_ENTRIES)
		return -E2BIG;
	r = grow((void **)items, *n, s->entry_size);
	if (r < 0)
		return r;
	r = store_entry(s, *items + *n * s->entry_size, e, false);
	if (r < 0)
		return r;
	(*n)++;
	return 0;
}

int img_catalog_add_image(struct img_catalog *c, const struct img_cat_image *e)
{
	return add_entry(c, &sections[0], e);
}

int img_catalog_add_plain(struct img_catalog *c, const struct img_cat_plain *e)
{
	return add_entry(c, &sections[1], e);
}

int img_catalog_add_package(struct img_catalog *c, const struct img_cat_package *e)
{
	return add_entry(c, &sections[2], e);
}

int img_catalog_remove_image(struct img_catalog *c, const char *name, const char *version)
{
	for (size_t i = 0; i < c->n_images; i++) {
		if (!strcmp(c->images[i].name, name) && !strcmp(c->images[i].version, version)) {
			memmove(&c->images[i], &c->images[i + 1],
			        (c->n_images - i - 1) * sizeof(*c->images));
			c->n_images--;
			return 0;
		}
	}
	return -ENOENT;
}

const struct img_cat_image *img_catalog_find_image(const struct img_catalog *c, const char *name,
                                                   const char *version)
{
	for (size_t i = 0; i < c->n_images; i++)
		if (!strcmp(c->images[i].name, name) && !strcmp(c->images[i].version, version))
			return &c->images[i];
	return NULL;
}

const struct img_cat_plain *img_catalog_find_plain(const struct img_catalog *c, const char *name,
                                                   const char *version)
{
	for (size_t i = 0; i < c->n_plain; i++)
		if (!strcmp(c->plain[i].name, name) && !strcmp(c->plain[i].version, version))
			return &c->plain[i];
	return NULL;
}

/* ---- version order (dpkg's verrevcmp) ---- */

static int at(const char *p, const char *end)
{
	return p < end ? (unsigned char)*p : 0;
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int order(int c)
{
	if (is_digit(c))
		return 0;
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
		return c;
	if (c == '~')
		return -1;
	if (c)
		return c + 256;
	return 0;
}

static int verrevcmp(const char *a, const char *ae, const char *b, const char *be)
{
	while (a < ae || b < be) {
		int first_diff = 0;

		while ((a < ae && !is_digit(at(a, ae))) || (b < be && !is_digit(at(b, be)))) {
			int ac = order(at(a, ae)), bc = order(at(b, be));

			if (ac != bc)
				return ac - bc;
			a++;
			b++;
		}
		while (at(a, ae) == '0')
			a++;
		while (at(b, be) == '0')
			b++;
		while (is_digit(at(a, ae)) && is_digit(at(b, be))) {
			if (!first_diff)
				first_diff = at(a, ae) - at(b, be);
			a++;
			b++;
		}
		if (is_digit(at(a, ae)))
			return 1;
		if (is_digit(at(b, be)))
			return -1;
		if (first_diff)
			return first_diff;
	}
	return 0;
}

struct vparts {
	const char *ep, *epe, *up, *upe, *rev, *reve;
};

static void split_version(const char *s, struct vparts *v)
{
	const char *end = s + strlen(s), *colon = strchr(s, ':'), *hyphen;

	v->ep = s;
	v->epe = colon ? colon : s; /* no epoch: "" which orders as 0 */
	v->up = colon ? colon + 1 : s;
	hyphen = strrchr(v->up, '-');
	v->upe = hyphen ? hyphen : end;
	v->rev = hyphen ? hyphen + 1 : end;
	v->reve = end;
}

static int sign(int x)
{
	return (x > 0) - (x < 0);
}

int img_pkg_version_cmp(const char *a, const char *b)
{
	struct vparts x, y;
	int r;

	split_version(a, &x);
	split_version(b, &y);
	/* Epochs are digit strings: verrevcmp compares them as numbers of any length. */
	r = verrevcmp(x.ep, x.epe, y.ep, y.epe);
	if (r == 0)
		r = verrevcmp(x.up, x.upe, y.up, y.upe);
	if (r == 0)
		r = verrevcmp(x.rev, x.reve, y.rev, y.reve);
	return sign(r);
}
