/* Package archives: build and index.
 *
 * A package is a pax tar compressed with zstd whose first member is
 * .rackboot/meta.json (name, version, arch, depends, conflicts, the list of
 * scripts), then .rackboot/scripts/<phase>, then the payload tree with
 * relative paths. The metadata comes first so the agent can read it from
 * the first bytes of the stream before deciding to install. The payload
 * may not contain a .rackboot/ directory of its own.
 *
 * index reads only that first member back (bounded to 1 MiB), so a
 * package's name and version in the catalogue are the ones inside it.
 *
 * What the agent refuses unless the signed entry allows it (setuid and
 * setgid bits, device nodes, FIFOs; sockets always) is declared in the
 * metadata as "allow" (META.json or pkg build --allow), and build refuses a
 * tree holding something the package does not declare, so a package that
 * builds installs. "reboot": true (or --reboot-required) marks a package
 * whose change needs a reboot (a kernel, a driver). index copies both into
 * the catalogue entry, where the signature covers them. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/sha256.h"
#include "common/util.h"
#include "pkg.h"

#define META_NAME  ".rackboot/meta.json"
#define META_MAX   (1024 * 1024)
#define SCRIPT_MAX (1024 * 1024)

static const char *const phases[] = { "preinst", "postinst", "prerm", "postrm" };

/* The catalogue's grammar ("name" or "name (OP version)"), so that a
 * package that builds can always be indexed. */
static bool dep_is_valid(const char *s)
{
	struct img_dep d;

	return img_dep_parse(s, &d) == 0;
}

static int read_small(const char *path, size_t max, char **ret, size_t *ret_len)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (!f)
		return -errno;
	buf = malloc(max + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, max + 1, f);
	fclose(f);
	if (n > max) {
		free(buf);
		return -EFBIG;
	}
	buf[n] = '\0';
	*ret = buf;
	*ret_len = n;
	return 0;
}

static int write_member(struct archive *a, const char *name, const void *data, size_t len, int mode)
{
	struct archive_entry *e = archive_entry_new();
	int r;

	if (!e)
		return -ENOMEM;
	archive_entry_set_pathname(e, name);
	archive_entry_set_size(e, (la_int64_t)len);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, (mode_t)mode);
	archive_entry_set_mtime(e, time(NULL), 0);
	r = archive_write_header(a, e);
	if (r == ARCHIVE_OK && len > 0 && archive_write_data(a, data, len) != (la_ssize_t)len)
		r = ARCHIVE_FATAL;
	archive_entry_free(e);
	return r == ARCHIVE_OK ? 0 : -EIO;
}

/* Meta's optional "allow" (array of words) and "reboot" (boolean). */
static int meta_allow_reboot(json_t *j, const char *where, unsigned *ret_allow, bool *ret_reboot,
                             char *err, size_t errlen)
{
	json_t *arr = json_object_get(j, "allow"), *rb = json_object_get(j, "reboot"), *v;
	unsigned allow = 0;
	size_t i;

	if (rb && !json_is_boolean(rb)) {
		snprintf(err, errlen, "%s: \"reboot\" must be true or false", where);
		return -EINVAL;
	}
	if (arr && !json_is_array(arr)) {
		snprintf(err, errlen, "%s: \"allow\" must be an array of setuid, devices, fifos",
		         where);
		return -EINVAL;
	}
	json_array_foreach(arr, i, v)
	{
		unsigned b;

		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
		    img_pkg_allow_parse(json_string_value(v), &b, NULL, 0) < 0 ||
		    strchr(json_string_value(v), ',')) {
			snprintf(err, errlen,
			         "%s: allow[%zu]: not one of \"setuid\", \"devices\", \"fifos\"",
			         where, i);
			return -EINVAL;
		}
		allow |= b;
	}
	*ret_allow = allow;
	*ret_reboot = json_is_true(rb);
	return 0;
}

static json_t *allow_json(unsigned allow)
{
	json_t *arr = json_array();

	for (unsigned b = 1; arr && b & IMG_PKG_ALLOW_ALL; b <<= 1)
		if ((allow & b) &&
		    json_array_append_new(arr, json_string(img_pkg_allow_word(b))) < 0) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

/* Validates meta and returns the normalised JSON stored in the package;
 * *allow and *reboot come in as the command line's and leave with meta's
 * added. */
static json_t *normalise_meta(json_t *in, unsigned *allow, bool *reboot, char *err, size_t errlen)
{
	static const char *const keys[] = { "name", "version", "arch" };
	json_t *out = json_object(), *scripts = json_array();
	const char *lists[] = { "depends", "conflicts" };

	for (size_t i = 0; i < RB_ARRAY_SIZE(keys); i++) {
		const char *v = json_string_value(json_object_get(in, keys[i]));
		bool is_version = !strcmp(keys[i], "version");
		if (!v || !(is_version ? img_pkg_version_is_valid(v) : img_name_is_valid(v))) {
			snprintf(err, errlen, "meta: \"%s\" missing or not [A-Za-z0-9._+%s-]{1,64}",
			         keys[i], is_version ? "~" : "");
			goto err;
		}
		json_object_set_new(out, keys[i], json_string(v));
	}
	for (size_t i = 0; i < 2; i++) {
		json_t *arr = json_object_get(in, lists[i]), *v, *copy = json_array();
		size_t idx;

		if (arr && !json_is_array(arr)) {
			json_decref(copy);
			snprintf(err, errlen, "meta: \"%s\" must be an array of strings", lists[i]);
			goto err;
		}
		json_array_foreach(arr, idx, v)
		{
			if (!json_is_string(v) || !dep_is_valid(json_string_value(v)) ||
			    idx >= IMG_CAT_REL_MAX) {
				json_decref(copy);
				snprintf(err, errlen,
				         "meta: %s[%zu]: at most %d entries, each \"name\" or "
				         "\"name (OP version)\" with OP one of = >= <= >> <<",
				         lists[i], idx, IMG_CAT_REL_MAX);
				goto err;
			}
			json_array_append(copy, v);
		}
		json_object_set_new(out, lists[i], copy);
	}
	{
		unsigned a;
		bool rb;

		if (meta_allow_reboot(in, "meta", &a, &rb, err, errlen) < 0)
			goto err;
		*allow |= a;
		*reboot |= rb;
	}
	if (*allow && json_object_set_new(out, "allow", allow_json(*allow)) < 0)
		goto err;
	if (*reboot)
		json_object_set_new(out, "reboot", json_true());
	json_object_set_new(out, "scripts", scripts);
	return out;
err:
	json_decref(out);
	json_decref(scripts);
	return NULL;
}

int img_pkg_build(const char *dir, const char *meta_path, const char *out_path, unsigned allow,
                  bool reboot, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *in = NULL, *meta = NULL, *sc;
	struct archive *a = NULL, *disk = NULL;
	struct archive_entry *ent = NULL;
	char *metatext = NULL, *mcopy = NULL, tmp[4200];
	const char *metadir;
	size_t dlen = strlen(dir);
	int e = -EINVAL;

	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	in = json_load_file(meta_path, JSON_REJECT_DUPLICATES, &jerr);
	if (!in || !json_is_object(in)) {
		snprintf(err, errlen, "%s:%d: %s", meta_path, jerr.line,
		         in ? "not an object" : jerr.text);
		goto out;
	}
	meta = normalise_meta(in, &allow, &reboot, err, errlen);
	if (!meta)
		goto out;
	mcopy = strdup(meta_path);
	if (!mcopy) {
		e = -ENOMEM;
		goto out;
	}
	metadir = dirname(mcopy);
	sc = json_object_get(in, "scripts");
	if (sc && !json_is_object(sc)) {
		snprintf(err, errlen, "meta: \"scripts\" must be an object {phase: file}");
		goto out;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", out_path);
	a = archive_write_new();
	if (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    archive_write_add_filter_zstd(a) != ARCHIVE_OK ||
	    archive_write_open_filename(a, tmp) != ARCHIVE_OK) {
		snprintf(err, errlen, "%s: %s", tmp, a ? archive_error_string(a) : "no memory");
		e = -EIO;
		goto out;
	}
	/* Scripts are listed in meta first, then stored after it. */
	for (size_t i = 0; sc && i < RB_ARRAY_SIZE(phases); i++)
		if (json_object_get(sc, phases[i]))
			json_array_append_new(json_object_get(meta, "scripts"),
			                      json_string(phases[i]));
	{
		const char *k;
		json_t *v;
		json_object_foreach(sc, k, v)
		{
			bool known = false;
			for (size_t i = 0; i < RB_ARRAY_SIZE(phases); i++)
				known |= strcmp(k, phases[i]) == 0;
			if (!known || !json_is_string(v)) {
				snprintf(err, errlen,
				         "meta: scripts.%s: phases are preinst postinst prerm "
				         "postrm, each a file name",
				         k);
				goto out_unlink;
			}
		}
	}
	metatext = json_dumps(meta, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!metatext || write_member(a, META_NAME, metatext, strlen(metatext), 0644) < 0) {
		snprintf(err, errlen, "writing %s: %s", tmp, archive_error_string(a));
		e = -EIO;
		goto out_unlink;
	}
	for (size_t i = 0; sc && i < RB_ARRAY_SIZE(phases); i++) {
		const char *f = json_string_value(json_object_get(sc, phases[i]));
		char path[4200], name[64], *body = NULL;
		size_t blen = 0;

		if (!f)
			continue;
		snprintf(path, sizeof(path), "%s/%s", f[0] == '/' ? "" : metadir, f);
		if (read_small(f[0] == '/' ? f : path, SCRIPT_MAX, &body, &blen) < 0) {
			snprintf(err, errlen, "script %s: %s unreadable", phases[i], path);
			goto out_unlink;
		}
		snprintf(name, sizeof(name), ".rackboot/scripts/%s", phases[i]);
		e = write_member(a, name, body, blen, 0755);
		free(body);
		if (e < 0) {
			snprintf(err, errlen, "writing %s", tmp);
			goto out_unlink;
		}
	}
	disk = archive_read_disk_new();
	archive_read_disk_set_standard_lookup(disk);
	archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
	if (archive_read_disk_open(disk, dir) != ARCHIVE_OK) {
		snprintf(err, errlen, "%s: %s", dir, archive_error_string(disk));
		e = -ENOENT;
		goto out_unlink;
	}
	ent = archive_entry_new();
	for (;;) {
		const char *p;
		char rel[4096];
		int r = archive_read_next_header2(disk, ent);

		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK) {
			snprintf(err, errlen, "%s: %s", dir, archive_error_string(disk));
			e = -EIO;
			goto out_unlink;
		}
		archive_read_disk_descend(disk);
		p = archive_entry_pathname(ent);
		if (strncmp(p, dir, dlen) != 0)
			continue;
		p += dlen;
		while (*p == '/')
			p++;
		if (*p == '\0')
			continue; /* the root itself */
		if (strncmp(p, ".rackboot", 9) == 0 && (p[9] == '\0' || p[9] == '/')) {
			snprintf(err, errlen, "%s/%s: .rackboot/ is reserved for the metadata", dir,
			         p);
			goto out_unlink;
		}
		snprintf(rel, sizeof(rel), "%s", p);
		{
			const char *word = NULL;
			char why[64];

			r = img_pkg_mode_check(archive_entry_mode(ent), allow, &word, why,
			                       sizeof(why));
			if (r == -EINVAL) {
				snprintf(err, errlen, "%s/%s %s: a package cannot hold it", dir, p,
				         why);
				goto out_unlink;
			}
			if (r < 0) {
				snprintf(err, errlen,
				         "%s/%s %s: agents refuse it unless the package allows it; "
				         "if it needs it, build with --allow %s (or \"allow\": "
				         "[\"%s\"] in %s)",
				         dir, p, why, word, word, meta_path);
				goto out_unlink;
			}
		}
		archive_entry_set_pathname(ent, rel);
		if (archive_write_header(a, ent) != ARCHIVE_OK) {
			snprintf(err, errlen, "%s: %s", rel, archive_error_string(a));
			e = -EIO;
			goto out_unlink;
		}
		if (archive_entry_filetype(ent) == AE_IFREG && archive_entry_size(ent) > 0) {
			const void *buf;
			size_t sz;
			la_int64_t off;
			while ((r = archive_read_data_block(disk, &buf, &sz, &off)) == ARCHIVE_OK)
				if (archive_write_data(a, buf, sz) < 0)
					break;
			if (r != ARCHIVE_EOF) {
				snprintf(err, errlen, "%s: %s", rel, archive_error_string(disk));
				e = -EIO;
				goto out_unlink;
			}
		}
	}
	if (archive_write_close(a) != ARCHIVE_OK || rename(tmp, out_path) < 0) {
		snprintf(err, errlen, "%s: %s", out_path, archive_error_string(a));
		e = -EIO;
		goto out_unlink;
	}
	e = 0;
	goto out;
out_unlink:
	unlink(tmp);
	if (e == 0)
		e = -EINVAL;
out:
	archive_entry_free(ent);
	if (disk)
		archive_read_free(disk);
	if (a)
		archive_write_free(a);
	json_decref(in);
	json_decref(meta);
	free(metatext);
	free(mcopy);
	return e;
}

/* Copies meta's depends and conflicts (optional) into p, checked as the
 * catalogue will check them. On failure p owns nothing. */
static int meta_relations(json_t *j, struct img_cat_package *p, const char *path, char *err,
                          size_t errlen)
{
	static const char *const keys[] = { "depends", "conflicts" };
	char **lists[2] = { NULL, NULL };
	size_t counts[2] = { 0, 0 };
	int e = 0;

	for (size_t k = 0; k < 2 && e == 0; k++) {
		const char *tmp[IMG_CAT_REL_MAX];
		json_t *arr = json_object_get(j, keys[k]), *v;
		size_t i;

		if (!arr)
			continue;
		if (!json_is_array(arr) || json_array_size(arr) > IMG_CAT_REL_MAX) {
			snprintf(err, errlen,
			         "%s: %s: \"%s\" is not an array of at most %d strings", path,
			         META_NAME, keys[k], IMG_CAT_REL_MAX);
			e = -EINVAL;
			break;
		}
		json_array_foreach(arr, i, v)
		{
			if (!json_is_string(v) || !dep_is_valid(json_string_value(v))) {
				snprintf(err, errlen,
				         "%s: %s: %s[%zu] is not \"name\" or \"name (OP version)\" "
				         "(rebuild the package with pkg build)",
				         path, META_NAME, keys[k], i);
				e = -EINVAL;
				break;
			}
			tmp[i] = json_string_value(v);
		}
		if (e == 0) {
			e = img_cat_rel_dup((char *const *)tmp, json_array_size(arr), &lists[k]);
			counts[k] = json_array_size(arr);
		}
	}
	if (e < 0) {
		free(lists[0]);
		free(lists[1]);
		return e;
	}
	p->depends = lists[0];
	p->n_depends = counts[0];
	p->conflicts = lists[1];
	p->n_conflicts = counts[1];
	return 0;
}

/* Reads the first member of a package: it must be .rackboot/meta.json. */
static int pkg_read_meta(const char *path, struct img_cat_package *p, char *err, size_t errlen)
{
	struct archive *a = archive_read_new();
	struct archive_entry *ent;
	json_t *j = NULL;
	json_error_t jerr;
	char *buf = NULL;
	la_int64_t size;
	la_ssize_t n;
	int e = -EINVAL;

	archive_read_support_filter_zstd(a);
	archive_read_support_format_tar(a);
	if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK ||
	    archive_read_next_header(a, &ent) != ARCHIVE_OK) {
		snprintf(err, errlen, "%s: not a .tar.zst package: %s", path,
		         archive_error_string(a));
		goto out;
	}
	size = archive_entry_size(ent);
	if (strcmp(archive_entry_pathname(ent), META_NAME) != 0 || size <= 0 || size > META_MAX) {
		snprintf(err, errlen, "%s: first member is not %s (build it with pkg build)", path,
		         META_NAME);
		goto out;
	}
	buf = malloc((size_t)size + 1);
	if (!buf || (n = archive_read_data(a, buf, (size_t)size)) != size) {
		snprintf(err, errlen, "%s: reading %s failed", path, META_NAME);
		goto out;
	}
	j = json_loadb(buf, (size_t)size, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		snprintf(err, errlen, "%s: %s: %s", path, META_NAME, jerr.text);
		goto out;
	}
	{
		const char *nm = json_string_value(json_object_get(j, "name"));
		const char *v = json_string_value(json_object_get(j, "version"));
		const char *ar = json_string_value(json_object_get(j, "arch"));
		if (!nm || !v || !ar || !img_name_is_valid(nm) || !img_pkg_version_is_valid(v) ||
		    !img_name_is_valid(ar) || strlen(ar) >= sizeof(p->arch)) {
			snprintf(err, errlen, "%s: %s lacks a valid name, version or arch", path,
			         META_NAME);
			goto out;
		}
		memset(p, 0, sizeof(*p));
		e = meta_allow_reboot(j, path, &p->allow, &p->reboot, err, errlen);
		if (e < 0)
			goto out;
		e = meta_relations(j, p, path, err, errlen);
		if (e < 0)
			goto out;
		e = -EINVAL;
		snprintf(p->name, sizeof(p->name), "%s", nm);
		snprintf(p->version, sizeof(p->version), "%s", v);
		snprintf(p->arch, sizeof(p->arch), "%s", ar);
		snprintf(p->path, sizeof(p->path), "pkgs/%s_%s_%s.tar.zst", nm, v, ar);
	}
	e = 0;
out:
	json_decref(j);
	free(buf);
	archive_read_free(a);
	return e;
}

/* Copies src into the repository at rel (via .tmp/), hashing it. */
static int copy_in(struct img_repo *r, const char *src, const char *rel, char hex[65],
                   uint64_t *ret_size)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t *buf = malloc(1 << 20), h[32];
	char tmp[128];
	uint64_t size = 0;
	int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, e = 0;

	if (in < 0 || !md || !buf || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		e = in < 0 ? -errno : -ENOMEM;
		goto out;
	}
	out = img_repo_tmpfile(r, "pkg", tmp);
	if (out < 0) {
		e = out;
		goto out;
	}
	for (;;) {
		ssize_t k = read(in, buf, 1 << 20);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			e = k < 0 ? -errno : 0;
			break;
		}
		EVP_DigestUpdate(md, buf, (size_t)k);
		size += (uint64_t)k;
		if (write(out, buf, (size_t)k) != k) {
			e = -EIO;
			break;
		}
	}
	if (e == 0 && fsync(out) < 0)
		e = -errno;
	if (e == 0 && renameat(r->dirfd, tmp, r->dirfd, rel) < 0)
		e = -errno;
	if (e < 0)
		unlinkat(r->dirfd, tmp, 0);
	EVP_DigestFinal_ex(md, h, NULL);
	rb_hex(h, 32, hex);
	*ret_size = size;
out:
	if (out >= 0)
		close(out);
	if (in >= 0)
		close(in);
	EVP_MD_CTX_free(md);
	free(buf);
	return e;
}

struct index_arg {
	struct img_cat_package *p;
	size_t n;
};

static int catalog_add_pkgs(struct img_catalog *c, void *arg)
{
	const struct index_arg *a = arg;

	for (size_t i = 0; i < a->n; i++) {
		int e = img_catalog_add_package(c, &a->p[i]);
		if (e < 0)
			return e;
	}
	return 0;
}

int img_pkg_index(struct img_repo *r, const struct rb_key *key, const char *const *paths, size_t n,
                  char *err, size_t errlen)
{
	struct index_arg a = { calloc(n ? n : 1, sizeof(struct img_cat_package)), n };
	int e = 0;

	if (!a.p)
		return -ENOMEM;
	mkdirat(r->dirfd, "pkgs", 0755);
	mkdirat(r->dirfd, ".tmp", 0755);
	for (size_t i = 0; i < n && e == 0; i++)
		e = pkg_read_meta(paths[i], &a.p[i], err, errlen);
	if (e == 0)
		e = img_repo_lock(r);
	for (size_t i = 0; i < n && e == 0; i++) {
		e = copy_in(r, paths[i], a.p[i].path, a.p[i].sha256, &a.p[i].size);
		if (e < 0)
			snprintf(err, errlen, "%s -> %s: %s", paths[i], a.p[i].path, strerror(-e));
	}
	if (e == 0)
		e = img_repo_catalog_update(r, key, catalog_add_pkgs, &a, err, errlen);
	img_repo_unlock(r);
	for (size_t i = 0; i < n; i++) {
		free(a.p[i].depends);
		free(a.p[i].conflicts);
	}
	free(a.p);
	return e;
}
