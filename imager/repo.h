/* Image repository on a local file system: layout, atomic publish,
 * catalogue update, locking, rm and gc. See repo.c and docs/formats.md. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/catalog.h"
#include "common/manifest.h"
#include "common/sign.h"

struct img_repo {
	char *path;
	int dirfd;
	int lock_fd; /* -1 unless locked */
};

/* Opens a repository directory; with create, makes it and its subfolders. */
int img_repo_open(const char *path, bool create, struct img_repo **ret);
void img_repo_free(struct img_repo *r);

/* flock(LOCK_EX) on repo/.lock: serialises publish, rm, gc, catalogue writes. */
int img_repo_lock(struct img_repo *r);
void img_repo_unlock(struct img_repo *r);

/* Reads a whole file below the repository (at most max bytes: -EFBIG). */
int img_repo_read(struct img_repo *r, const char *rel, size_t max, char **ret, size_t *ret_len);

/* Writes data to .tmp/, fsyncs it and renames it over rel; fsyncs rel's
 * directory. */
int img_repo_write_atomic(struct img_repo *r, const char *rel, const void *data, size_t len);

/* Creates an exclusive, flock()ed file in .tmp/ (gc skips locked files).
 * ret_rel receives its path relative to the repository. */
int img_repo_tmpfile(struct img_repo *r, const char *prefix, char ret_rel[128]);

/* Whether images/<name>/<version>.manifest.json exists. */
bool img_repo_has_image(struct img_repo *r, const char *name, const char *version);

/* Calls fn for every images/<name>/<version>.manifest.json whose name and
 * version are valid, in directory order. A negative return stops the walk. */
typedef int (*img_repo_image_fn)(struct img_repo *r, const char *name, const char *version,
                                 void *arg);
int img_repo_for_each_image(struct img_repo *r, img_repo_image_fn fn, void *arg);

/* Loads a manifest. With pubs (n_pubs > 0) its signature is checked first:
 * -EBADMSG with a message if it does not verify. ret_raw (optional)
 * receives the exact bytes. */
int img_repo_load_manifest(struct img_repo *r, const char *name, const char *version,
                           const struct rb_key *const *pubs, size_t n_pubs,
                           struct img_manifest **ret, char **ret_raw, size_t *ret_raw_len,
                           char *err, size_t errlen);

/* Reads, edits (fn) and re-signs the catalogue. The caller holds the lock. */
typedef int (*img_repo_catalog_fn)(struct img_catalog *c, void *arg);
int img_repo_catalog_update(struct img_repo *r, const struct rb_key *key, img_repo_catalog_fn fn,
                            void *arg, char *err, size_t errlen);

/* Publishes a manifest: signs it, writes manifest+sig atomically into
 * images/, adds it to the catalogue. Takes the lock. -EEXIST if the
 * version exists; -ENOENT if a pack it references vanished. */
int img_repo_publish(struct img_repo *r, const struct rb_key *key, const struct img_manifest *m,
                     char *err, size_t errlen);

/* Removes an image version and its catalogue entry. Takes the lock. */
int img_repo_rm(struct img_repo *r, const struct rb_key *key, const char *name, const char *version,
                char *err, size_t errlen);

struct img_gc_stats {
	uint64_t packs_removed, pack_bytes_removed, tmp_removed, packs_kept_young;
};
/* Deletes packs no manifest references and .tmp/ files, both only when
 * older than min_age seconds and not flock()ed by a running build. */
int img_repo_gc(struct img_repo *r, int64_t min_age, struct img_gc_stats *ret, char *err,
                size_t errlen);

/* Opens packs/<id>.pack read-only; -ENOENT if missing. */
int img_repo_open_pack(struct img_repo *r, const char *id);
