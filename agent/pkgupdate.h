/* Stage 3: bringing a root's installed packages to a desired set (adds,
 * upgrades, removals, each package all or nothing). See agent/pkgupdate.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

struct agent_pkg_opts;
struct img_catalog;

struct agent_pkg_change {
	char name[65];
	char from[65]; /* "" = added */
	char to[65];   /* "" = removed */
	bool done;
};

struct agent_sync_result {
	struct agent_pkg_change *changes; /* in the order they are applied */
	size_t n;
	bool reboot_required; /* a changed package has (or had) files under /boot
	                         or /lib/modules (or /usr/lib/modules), or is
	                         flagged "reboot" in the catalogue */
};

/* The changes from what <root>/var/lib/rackboot/installed.json lists to
 * wanted ("NAME=VERSION" pins) with their dependencies resolved from cat
 * for o->arch: removals first (packages no longer wanted, the last
 * installed first), then adds and upgrades in install order. Pure
 * planning: nothing is changed. */
int agent_pkg_sync_plan(const struct agent_pkg_opts *o, const struct img_catalog *cat,
                        const char *const *wanted, size_t n, struct agent_sync_result *ret,
                        char *err, size_t errlen);

/* Plans and applies: each change is its own transaction (agent_pkg_remove,
 * agent_pkg_install_cat); the first failure stops with the package and
 * reason in err, the changes before it stay (done in ret). */
int agent_pkg_sync(const struct agent_pkg_opts *o, const struct img_catalog *cat,
                   const char *const *wanted, size_t n, struct agent_sync_result *ret, char *err,
                   size_t errlen);

void agent_sync_result_fini(struct agent_sync_result *r);
