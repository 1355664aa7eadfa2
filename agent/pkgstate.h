/* The installed-package record of a root (installed.json) and a safe
 * mkdir -p below a directory fd. See agent/pkgstate.c. */
#pragma once
#include <stddef.h>

struct img_cat_package;

/* mkdir -p of the relative path below dirfd (mode 0755), never following a
 * symlink. Returns an fd of the last directory, or -errno. */
int agent_mkdir_beneath(int dirfd, const char *path);

/* Replaces (or adds) cat's entry in <root>/var/lib/rackboot/installed.json
 * (rootfd: the root), listing paths[0..n) (relative to the root, as they
 * are now), and writes the file atomically. 0, or -errno with a reason in
 * err. */
int agent_pkg_record(int rootfd, const char *root, const struct img_cat_package *cat,
                     const char *const *paths, size_t n, char *err, size_t errlen);

struct json_t;
/* The packages recorded in <root>/var/lib/rackboot/installed.json as a
 * JSON array of {"name", "version"} (empty when there is no file). 0,
 * -EINVAL for a damaged file (reason in err), -ENOMEM. */
int agent_pkg_state_list(int rootfd, struct json_t **ret, char *err, size_t errlen);

/* installed.json parsed (a new {"format", "packages": []} when there is
 * none). -EINVAL for a damaged file (reason in err), -ENOMEM. */
int agent_pkg_state_load(int rootfd, struct json_t **ret, char *err, size_t errlen);
/* The same on installed.json already loaded as state (agent_pkg_state_load):
 * state is changed and written. Unrecord: -ENOENT when name has no entry.
 * After a failed write, state holds the change that is not on disk: load
 * it again. */
int agent_pkg_record_in(int rootfd, const char *root, struct json_t *state,
                        const struct img_cat_package *cat, const char *const *paths, size_t n,
                        char *err, size_t errlen);
int agent_pkg_unrecord_in(int rootfd, const char *root, struct json_t *state, const char *name,
                          char *err, size_t errlen);
