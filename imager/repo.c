/* Image repository on the publisher's file system.
 *
 * Owns the layout (packs/, images/, plain/, pkgs/, .tmp/, catalog.json),
 * the publish order that keeps every reader safe, and the exclusive lock
 * (flock on repo/.lock) that serialises publish, rm, gc and catalogue
 * writes. Files become visible only by rename() from .tmp/ after fsync, so
 * a reader never sees a half-written file, and a manifest is renamed into
 * images/ only after every pack it references is in packs/. gc never
 * deletes what a publish in progress may still need: only packs no
 * manifest references AND older than --min-age, and never a .tmp/ file that
 * a running build holds flock()ed.
 *
 * Must never: rewrite a published pack, follow a name from a manifest
 * outside the repository (names are validated before they become paths). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/sha256.h"
#include "common/util.h"
#include "repo.h"

static const char *const repo_dirs[] = { "packs", "images", "plain", "pkgs", ".tmp" };

int img_repo_open(const char *path, bool create, struct img_repo **ret)
{
	struct img_repo *r;
	int fd, e;

	if (create && mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (create) {
		for (size_t i = 0; i < RB_ARRAY_SIZE(repo_dirs); i++) {
			if (mkdirat(fd, repo_dirs[i], 0755) < 0 && errno != EEXIST) {
				e = -errno;
				close(fd);
				return e;
			}
		}
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->path = strdup(path))) {
		free(r);
		close(fd);
		return -ENOMEM;
	}
	r->dirfd = fd;
	r->lock_fd = -1;
	*ret = r;
	return 0;
}

void img_repo_free(struct img_repo *r)
{
	if (!r)
		return;
	img_repo_unlock(r);
	close(r->dirfd);
	free(r->path);
	free(r);
}

int img_repo_lock(struct img_repo *r)
{
	int fd;

	if (r->lock_fd >= 0)
		return 0;
	fd = openat(r->dirfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	r->lock_fd = fd;
	return 0;
}

void img_repo_unlock(struct img_repo *r)
{
	if (r->lock_fd < 0)
		return;
	close(r->lock_fd); /* releases the flock */
	r->lock_fd = -1;
}

static int read_fd_all(int fd, size_t max, char **ret, size_t *ret_len)
{
	struct stat st;
	char *buf;
	size_t n = 0;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return -ENOMEM;
	while (n < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + n, (size_t)st.st_size - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			free(buf);
			return k < 0 ? -errno : -EIO;
		}
		n += (size_t)k;
	}
	buf[n] = '\0';
	*ret = buf;
	*ret_len = n;
	return 0;
}

int img_repo_read(struct img_repo *r, const char *rel, size_t max, char **ret, size_t *ret_len)
{
	int fd, e;

	fd = rb_open_beneath(r->dirfd, rel, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fd;
	e = read_fd_all(fd, max, ret, ret_len);
	close(fd);
	return e;
}

int img_repo_tmpfile(struct img_repo *r, const char *prefix, char ret_rel[128])
{
	static unsigned counter;
	char rel[128];

	for (int tries = 0; tries < 100; tries++) {
		unsigned c = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
		int fd;

		snprintf(rel, sizeof(rel), ".tmp/%s.%ld.%u.%08lx", prefix, (long)getpid(), c,
		         (unsigned long)(rb_now_usec() & 0xffffffffUL));
		fd = openat(r->dirfd, rel, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 && errno == EEXIST)
			continue;
		if (fd < 0)
			return -errno;
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			int e = -errno;
			close(fd);
			unlinkat(r->dirfd, rel, 0);
			return e;
		}
		memcpy(ret_rel, rel, sizeof(rel));
		return fd;
	}
	return -EEXIST;
}

static int fsync_parent(struct img_repo *r, const char *rel)
{
	char dir[512];
	char *slash;
	int fd, e = 0;

	snprintf(dir, sizeof(dir), "%s", rel);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	fd = openat(r->dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		e = -errno;
	close(fd);
	return e;
}

int img_repo_write_atomic(struct img_repo *r, const char *rel, const void *data, size_t len)
{
	char tmp[128];
	int fd, e;

	fd = img_repo_tmpfile(r, "w", tmp);
	if (fd < 0)
		return fd;
	e = rb_write_all(fd, data, len);
	if (e == 0 && fsync(fd) < 0)
		e = -errno;
	if (e == 0 && renameat(r->dirfd, tmp, r->dirfd, rel) < 0)
		e = -errno;
	close(fd);
	if (e < 0) {
		unlinkat(r->dirfd, tmp, 0);
		return e;
	}
	return fsync_parent(r, rel);
}

static int manifest_rel(char *buf, size_t len, const char *name, const char *version,
                        const char *suffix)
{
	if (!img_name_is_valid(name) || !img_name_is_valid(version))
		return -EINVAL;
	snprintf(buf, len, "images/%s/%s.manifest.json%s", name, version, suffix);
	return 0;
}

bool img_repo_has_image(struct img_repo *r, const char *name, const char *version)
{
	char rel[256];
	struct stat st;

	if (manifest_rel(rel, sizeof(rel), name, version, "") < 0)
		return false;
	return fstatat(r->dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

int img_repo_for_each_image(struct img_repo *r, img_repo_image_fn fn, void *arg)
{
	static const char sfx[] = ".manifest.json";
	DIR *top;
	struct dirent *de;
	int fd, e = 0;

	fd = openat(r->dirfd, "images", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	top = fdopendir(fd);
	if (!top) {
		close(fd);
		return -errno;
	}
	while (e >= 0 && (de = readdir(top))) {
		DIR *sub;
		struct dirent *ve;
		int sfd;

		if (!img_name_is_valid(de->d_name))
			continue;
		sfd = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (sfd < 0)
			continue;
		sub = fdopendir(sfd);
		if (!sub) {
			close(sfd);
			continue;
		}
		while (e >= 0 && (ve = readdir(sub))) {
			size_t n = strlen(ve->d_name);
			char version[80];

			if (n <= sizeof(sfx) - 1 || n - (sizeof(sfx) - 1) >= sizeof(version))
				continue;
			if (strcmp(ve->d_name + n - (sizeof(sfx) - 1), sfx) != 0)
				continue;
			memcpy(version, ve->d_name, n - (sizeof(sfx) - 1));
			version[n - (sizeof(sfx) - 1)] = '\0';
			if (!img_name_is_valid(version))
				continue;
			e = fn(r, de->d_name, version, arg);
		}
		closedir(sub);
	}
	closedir(top);
	return e < 0 ? e : 0;
}

int img_repo_load_manifest(struct img_repo *r, const char *name, const char *version,
                           const struct rb_key *const *pubs, size_t n_pubs,
                           struct img_manifest **ret, char **ret_raw, size_t *ret_raw_len,
                           char *err, size_t errlen)
{
	char rel[256], srel[256], perr[256];
	char *raw = NULL, *sig = NULL;
	size_t raw_len, sig_len;
	struct img_manifest *m = NULL;
	int e;

	if (manifest_rel(rel, sizeof(rel), name, version, "") < 0 ||
	    manifest_rel(srel, sizeof(srel), name, version, ".sig") < 0) {
		snprintf(err, errlen, "invalid image name or version");
		return -EINVAL;
	}
	e = img_repo_read(r, rel, IMG_MANIFEST_MAX_SIZE, &raw, &raw_len);
	if (e < 0) {
		snprintf(err, errlen, "%s: %s", rel,
		         e == -ENOENT ? "no such image version (see: rackboot-image ls)"
		                      : strerror(-e));
		return e;
	}
	if (n_pubs > 0) {
		e = img_repo_read(r, srel, 4096, &sig, &sig_len);
		if (e < 0) {
			snprintf(err, errlen,
			         "%s: %s: the manifest is unsigned; sign it with "
			         "rackboot-image sign",
			         srel, strerror(-e));
			goto err_free;
		}
		e = rb_verify(pubs, n_pubs, raw, raw_len, sig, sig_len);
		if (e < 0) {
			snprintf(err, errlen,
			         "%s: signature does not verify with the given public key(s)%s: "
			         "the manifest was modified or signed with another key",
			         rel, e == -EINVAL ? " (malformed signature file)" : "");
			e = -EBADMSG;
			goto err_free;
		}
	}
	e = img_manifest_parse(raw, raw_len, &m, perr, sizeof(perr));
	if (e < 0) {
		snprintf(err, errlen, "%s: %s", rel, perr);
		goto err_free;
	}
	if (strcmp(m->name, name) != 0 || strcmp(m->version, version) != 0) {
		snprintf(err, errlen, "%s: names image %s %s, not the one its path says", rel,
		         m->name, m->version);
		e = -EBADMSG;
		goto err_free;
	}
	free(sig);
	*ret = m;
	if (ret_raw) {
		*ret_raw = raw;
		*ret_raw_len = raw_len;
	} else {
		free(raw);
	}
	return 0;
err_free:
	img_manifest_free(m);
	free(sig);
	free(raw);
	return e;
}

int img_repo_catalog_update(struct img_repo *r, const struct rb_key *key, img_repo_catalog_fn fn,
                            void *arg, char *err, size_t errlen)
{
	struct img_catalog *c = NULL;
	char *raw = NULL, *out = NULL;
	size_t raw_len, out_len;
	char sig[90], perr[256];
	int e;

	e = img_repo_read(r, "catalog.json", IMG_CATALOG_MAX_SIZE, &raw, &raw_len);
	if (e == -ENOENT)
		e = img_catalog_new(&c);
	else if (e == 0)
		e = img_catalog_parse(raw, raw_len, &c, perr, sizeof(perr));
	else
		snprintf(perr, sizeof(perr), "%s", strerror(-e));
	if (e < 0) {
		snprintf(err, errlen, "catalog.json: %s", perr);
		goto out;
	}
	e = fn(c, arg);
	if (e < 0) {
		snprintf(err, errlen, "catalogue entry refused: %s", strerror(-e));
		goto out;
	}
	c->generated = time(NULL);
	e = img_catalog_serialize(c, &out, &out_len);
	if (e == 0)
		e = rb_sign(key, out, out_len, sig);
	/* Signature first, then the catalogue: a reader that sees a
	 * mismatching pair in between retries once (docs/formats.md). */
	if (e == 0)
		e = img_repo_write_atomic(r, "catalog.json.sig", sig, strlen(sig));
	if (e == 0)
		e = img_repo_write_atomic(r, "catalog.json", out, out_len);
	if (e < 0)
		snprintf(err, errlen, "writing the catalogue: %s", strerror(-e));
out:
	img_catalog_free(c);
	free(raw);
	free(out);
	return e;
}

struct add_image_arg {
	const struct img_manifest *m;
	const char *raw;
	size_t raw_len;
};

static int catalog_add_image(struct img_catalog *c, void *arg)
{
	const struct add_image_arg *a = arg;
	struct img_cat_image e;
	uint8_t h[32];

	memset(&e, 0, sizeof(e));
	snprintf(e.name, sizeof(e.name), "%s", a->m->name);
	snprintf(e.version, sizeof(e.version), "%s", a->m->version);
	snprintf(e.manifest, sizeof(e.manifest), "images/%s/%s.manifest.json", a->m->name,
	         a->m->version);
	rb_sha256(a->raw, a->raw_len, h);
	rb_hex(h, 32, e.manifest_sha256);
	e.disk_size = a->m->disk_size;
	e.stored_bytes = img_manifest_stored_bytes(a->m);
	return img_catalog_add_image(c, &e);
}

int img_repo_publish(struct img_repo *r, const struct rb_key *key, const struct img_manifest *m,
                     char *err, size_t errlen)
{
	char rel[256], srel[256], dir[160], sig[90];
	char *raw = NULL;
	size_t raw_len;
	struct add_image_arg a;
	int e;

	e = img_manifest_serialize(m, &raw, &raw_len);
	if (e < 0) {
		snprintf(err, errlen, "manifest does not validate: %s", strerror(-e));
		return e;
	}
	e = rb_sign(key, raw, raw_len, sig);
	if (e < 0) {
		snprintf(err, errlen, "signing the manifest: %s", strerror(-e));
		goto out;
	}
	manifest_rel(rel, sizeof(rel), m->name, m->version, "");
	manifest_rel(srel, sizeof(srel), m->name, m->version, ".sig");
	snprintf(dir, sizeof(dir), "images/%s", m->name);

	e = img_repo_lock(r);
	if (e < 0) {
		snprintf(err, errlen, "locking %s/.lock: %s", r->path, strerror(-e));
		goto out;
	}
	if (img_repo_has_image(r, m->name, m->version)) {
		snprintf(err, errlen,
		         "image %s %s already exists: remove it (rm) or pick a new "
		         "version",
		         m->name, m->version);
		e = -EEXIST;
		goto out_unlock;
	}
	/* Deduplicated chunks point into packs of other images: an rm + gc
	 * may have run since the build started. */
	for (size_t i = 0; i < m->n_packs; i++) {
		char prel[96];
		struct stat st;

		snprintf(prel, sizeof(prel), "packs/%s.pack", m->packs[i].id);
		if (fstatat(r->dirfd, prel, &st, 0) < 0 ||
		    (uint64_t)st.st_size != m->packs[i].size) {
			snprintf(err, errlen,
			         "%s vanished while building (a concurrent rm + gc?): "
			         "run the build again",
			         prel);
			e = -ENOENT;
			goto out_unlock;
		}
	}
	if (mkdirat(r->dirfd, dir, 0755) < 0 && errno != EEXIST) {
		e = -errno;
		snprintf(err, errlen, "mkdir %s: %s", dir, strerror(-e));
		goto out_unlock;
	}
	/* The signature first: a manifest is never visible unsigned. */
	e = img_repo_write_atomic(r, srel, sig, strlen(sig));
	if (e == 0)
		e = img_repo_write_atomic(r, rel, raw, raw_len);
	if (e < 0) {
		snprintf(err, errlen, "writing %s: %s", rel, strerror(-e));
		goto out_unlock;
	}
	a.m = m;
	a.raw = raw;
	a.raw_len = raw_len;
	e = img_repo_catalog_update(r, key, catalog_add_image, &a, err, errlen);
out_unlock:
	img_repo_unlock(r);
out:
	free(raw);
	return e;
}

struct rm_arg {
	const char *name, *version;
};

static int catalog_rm_image(struct img_catalog *c, void *arg)
{
	const struct rm_arg *a = arg;
	int e = img_catalog_remove_image(c, a->name, a->version);

	return e == -ENOENT ? 0 : e;
}

int img_repo_rm(struct img_repo *r, const struct rb_key *key, const char *name, const char *version,
                char *err, size_t errlen)
{
	char rel[256], srel[256], dir[160];
	struct rm_arg a = { name, version };
	int e;

	if (manifest_rel(rel, sizeof(rel), name, version, "") < 0) {
		snprintf(err, errlen, "invalid image name or version");
		return -EINVAL;
	}
	manifest_rel(srel, sizeof(srel), name, version, ".sig");
	e = img_repo_lock(r);
	if (e < 0) {
		snprintf(err, errlen, "locking: %s", strerror(-e));
		return e;
	}
	if (unlinkat(r->dirfd, rel, 0) < 0) {
		e = -errno;
		snprintf(err, errlen, "%s: %s", rel,
		         e == -ENOENT ? "no such image version (see: rackboot-image ls)"
		                      : strerror(-e));
		goto out;
	}
	unlinkat(r->dirfd, srel, 0);
	fsync_parent(r, rel);
	snprintf(dir, sizeof(dir), "images/%s", name);
	unlinkat(r->dirfd, dir, AT_REMOVEDIR); /* fails harmlessly if not empty */
	e = img_repo_catalog_update(r, key, catalog_rm_image, &a, err, errlen);
out:
	img_repo_unlock(r);
	return e;
}

int img_repo_open_pack(struct img_repo *r, const char *id)
{
	char rel[96];
	uint8_t tmp[32];
	int fd;

	if (strlen(id) != 64 || rb_unhex(id, tmp, 32) < 0)
		return -EINVAL;
	snprintf(rel, sizeof(rel), "packs/%s.pack", id);
	fd = openat(r->dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	return fd < 0 ? -errno : fd;
}

/* gc: the set of referenced pack ids, as a sorted array of hex strings. */
struct gc_refs {
	char (*ids)[65];
	size_t n, cap;
	char *err;
	size_t errlen;
};

static int gc_collect(struct img_repo *r, const char *name, const char *version, void *arg)
{
	struct gc_refs *g = arg;
	struct img_manifest *m;
	int e;

	e = img_repo_load_manifest(r, name, version, NULL, 0, &m, NULL, NULL, g->err, g->errlen);
	if (e < 0)
		return e; /* an unreadable manifest makes every pack possibly live */
	for (size_t i = 0; i < m->n_packs; i++) {
		if (g->n == g->cap) {
			size_t nc = g->cap ? g->cap * 2 : 256;
			void *p = realloc(g->ids, nc * sizeof(*g->ids));
			if (!p) {
				img_manifest_free(m);
				return -ENOMEM;
			}
			g->ids = p;
			g->cap = nc;
		}
		memcpy(g->ids[g->n++], m->packs[i].id, 65);
	}
	img_manifest_free(m);
	return 0;
}

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* True if the file is old enough and no running build holds it. */
static bool gc_may_delete(int dfd, const char *fname, int64_t min_age, struct stat *st)
{
	int fd;
	bool free_;

	if (fstatat(dfd, fname, st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st->st_mode))
		return false;
	if ((int64_t)time(NULL) - (int64_t)st->st_mtime < min_age)
		return false;
	fd = openat(dfd, fname, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	free_ = flock(fd, LOCK_EX | LOCK_NB) == 0;
	close(fd);
	return free_;
}

static int gc_dir(struct img_repo *r, const char *sub, const struct gc_refs *g, int64_t min_age,
                  struct img_gc_stats *s)
{
	DIR *d;
	struct dirent *de;
	int fd;

	fd = openat(r->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		struct stat st;
		size_t n = strlen(de->d_name);

		if (de->d_name[0] == '.')
			continue;
		if (g) {
			char id[65];

			if (n != 69 || strcmp(de->d_name + 64, ".pack") != 0)
				continue;
			memcpy(id, de->d_name, 64);
			id[64] = '\0';
			if (bsearch(id, g->ids, g->n, sizeof(*g->ids), cmp_id))
				continue;
			if (!gc_may_delete(fd, de->d_name, min_age, &st)) {
				s->packs_kept_young++;
				continue;
			}
			if (unlinkat(fd, de->d_name, 0) == 0) {
				s->packs_removed++;
				s->pack_bytes_removed += (uint64_t)st.st_size;
			}
		} else if (gc_may_delete(fd, de->d_name, min_age, &st) &&
		           unlinkat(fd, de->d_name, 0) == 0) {
			s->tmp_removed++;
		}
	}
	closedir(d);
	return 0;
}

int img_repo_gc(struct img_repo *r, int64_t min_age, struct img_gc_stats *ret, char *err,
                size_t errlen)
{
	struct gc_refs g = { .err = err, .errlen = errlen };
	struct img_gc_stats s = { 0 };
	int e;

	e = img_repo_lock(r);
	if (e < 0) {
		snprintf(err, errlen, "locking: %s", strerror(-e));
		return e;
	}
	e = img_repo_for_each_image(r, gc_collect, &g);
	if (e < 0) {
		char tmp[300];

		snprintf(tmp, sizeof(tmp), "%s", err);
		snprintf(err, errlen, "%s; nothing deleted: fix or rm that image first", tmp);
		goto out;
	}
	qsort(g.ids, g.n, sizeof(*g.ids), cmp_id);
	e = gc_dir(r, "packs", &g, min_age, &s);
	if (e == 0)
		e = gc_dir(r, ".tmp", NULL, min_age, &s);
	if (e < 0)
		snprintf(err, errlen, "gc: %s", strerror(-e));
	else
		*ret = s;
out:
	img_repo_unlock(r);
	free(g.ids);
	return e;
}
