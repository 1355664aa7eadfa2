/* Package set resolution from the signed catalogue alone (before any
 * download): Debian-style version order, depends, conflicts, install order. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/catalog.h"

#define AGENT_PKG_RESOLVE_MAX 10000 /* packages in one result */

/* dpkg's order: [epoch:]upstream[-revision], each compared as runs of
 * non-digits (letters before other characters, '~' before everything, even
 * the end) and numbers. <0, 0, >0 as strcmp. Never fails: any string has a
 * place in the order. */
int agent_pkg_version_cmp(const char *a, const char *b);

/* Whether version meets d's operator and version (d's name is not looked at). */
bool agent_pkg_dep_satisfied(const struct img_dep *d, const char *version);

/* Resolves wanted ("name" or "name=version") against the packages of cat
 * built for arch or "all": highest version unless pinned, depends followed
 * with their version constraints, conflicts checked both ways. On success
 * *ret is an array (caller frees it, not its elements, which point into
 * cat) of *ret_n packages in install order: each after all it depends on,
 * ties by name.
 *
 * No backtracking: the first version chosen for a name stands (pins first,
 * then the other wanted names in order, then depends breadth first); a
 * later constraint it does not meet is an error naming both sides.
 *
 * Errors (with a message in err): -EINVAL malformed wanted item or arch;
 * -ENOENT a package or version someone needs is not there (names who needs
 * what); -EEXIST two requirements disagree, or two chosen packages
 * conflict (names both); -ELOOP dependency cycle (names the path); -E2BIG
 * more than AGENT_PKG_RESOLVE_MAX packages; -ENOMEM. */
int agent_pkg_resolve(const struct img_catalog *cat, const char *arch, const char *const *wanted,
                      size_t n_wanted, const struct img_cat_package ***ret, size_t *ret_n,
                      char *err, size_t errlen);
