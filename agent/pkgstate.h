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
