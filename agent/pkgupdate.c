/* pkgupdate: stage 3's package work on the installed node. The desired
 * set (exact pins from rackbootd) is resolved with its dependencies from
 * the signed catalogue, compared with installed.json, and the difference
 * applied one package at a time through pkginstall's transactions: an
 * upgrade stages the new files beside the old ones, swaps them in with
 * renames, removes what the new version lacks, and keeps everything old
 * until the new postinst succeeded (agent/pkgtxn.c); a removal runs the
 * kept prerm/postrm. A failed package leaves the root exactly as it was
 * before that package.
 *
 * reboot_required: a package that changed has (or had, for removals and
 * the old side of upgrades) a file below boot/, lib/modules/ or
 * usr/lib/modules/ (a kernel, an initramfs, a driver module), or its
 * signed catalogue entry says "reboot": true (a driver whose files the
 * heuristic cannot see). The flag is kept in installed.json at install
 * (agent/pkgstate.c), so a removal knows it when the catalogue no longer
 * lists the installed version; the catalogue's entry of the installed
 * version counts too (packages installed before the flag existed).
 *
 * Owns the change list. Never changes a package the desired set does not
 * change. */
#include "agent/pkgupdate.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/pkginstall.h"
#include "agent/pkgresolve.h"
#include "agent/pkgstate.h"
#include "agent/plain.h"
#include "common/catalog.h"

void agent_sync_result_fini(struct agent_sync_result *r)
{
	free(r->changes);
	r->changes = NULL;
	r->n = 0;
}

/* The installed package name (state's entry): flagged "reboot" in state or
 * in cat's entry of its version and arch, or a file where kernels and
 * modules live. */
static bool needs_reboot(json_t *state, const struct img_catalog *cat, const char *name)
{
	static const char *const dirs[] = { "/boot/", "/lib/modules/", "/usr/lib/modules/" };
	json_t *pk, *f;
	size_t i, j;

	json_array_foreach(json_object_get(state, "packages"), i, pk)
	{
		const char *ver = json_string_value(json_object_get(pk, "version"));
		const char *arch = json_string_value(json_object_get(pk, "arch"));
		const struct img_cat_package *cp;

		if (strcmp(json_string_value(json_object_get(pk, "name")) ?: "", name) != 0)
			continue;
		if (json_is_true(json_object_get(pk, "reboot")))
			return true;
		cp = cat && ver && arch ? agent_pkg_find(cat, name, ver, arch) : NULL;
		if (cp && cp->reboot)
			return true;
		json_array_foreach(json_object_get(pk, "files"), j, f)
		{
			const char *path = json_string_value(json_object_get(f, "path")) ?: "";

			for (size_t k = 0; k < sizeof(dirs) / sizeof(dirs[0]); k++)
				if (!strncmp(path, dirs[k], strlen(dirs[k])))
					return true;
		}
	}
	return false;
}

static const char *installed_version(json_t *state, const char *name)
{
	json_t *pk;
	size_t i;

	json_array_foreach(
	        json_object_get(state, "packages"), i,
	        pk) if (!strcmp(json_string_value(json_object_get(pk, "name")) ?: "",
	                        name)) return json_string_value(json_object_get(pk, "version"));
	return NULL;
}

int agent_pkg_sync_plan(const struct agent_pkg_opts *o, const struct img_catalog *cat,
                        const char *const *wanted, size_t n, struct agent_sync_result *ret,
                        char *err, size_t errlen)
{
	const struct img_cat_package **order = NULL;
	json_t *state = NULL, *pk;
	size_t n_order = 0, i, cap;
	int rootfd, e;

	memset(ret, 0, sizeof(*ret));
	rootfd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return agent_errf(err, errlen, -errno, "%s: %s", o->root, strerror(errno));
	e = agent_pkg_state_load(rootfd, &state, err, errlen);
	close(rootfd);
	if (e < 0)
		return e;
	e = agent_pkg_resolve(cat, o->arch, wanted, n, &order, &n_order, err, errlen);
	if (e < 0)
		goto out;
	cap = json_array_size(json_object_get(state, "packages")) + n_order;
	ret->changes = calloc(cap ? cap : 1, sizeof(*ret->changes));
	if (!ret->changes) {
		e = -ENOMEM;
		goto out;
	}
	/* removals: the last installed first (dependents before what they need) */
	for (i = json_array_size(json_object_get(state, "packages")); i-- > 0;) {
		const char *nm, *ver;
		bool keep = false;

		pk = json_array_get(json_object_get(state, "packages"), i);
		nm = json_string_value(json_object_get(pk, "name"));
		ver = json_string_value(json_object_get(pk, "version"));
		if (!nm || !ver)
			continue;
		for (size_t k = 0; k < n_order && !keep; k++)
			keep = !strcmp(order[k]->name, nm);
		if (keep)
			continue;
		snprintf(ret->changes[ret->n].name, 65, "%s", nm);
		snprintf(ret->changes[ret->n].from, 65, "%s", ver);
		ret->reboot_required |= needs_reboot(state, cat, nm);
		ret->n++;
	}
	for (size_t k = 0; k < n_order; k++) {
		const char *had = installed_version(state, order[k]->name);

		if (had && !strcmp(had, order[k]->version))
			continue;
		snprintf(ret->changes[ret->n].name, 65, "%s", order[k]->name);
		snprintf(ret->changes[ret->n].from, 65, "%s", had ? had : "");
		snprintf(ret->changes[ret->n].to, 65, "%s", order[k]->version);
		ret->reboot_required |= had && needs_reboot(state, cat, order[k]->name);
		ret->n++;
	}
out:
	free(order);
	json_decref(state);
	if (e < 0)
		agent_sync_result_fini(ret);
	return e;
}

int agent_pkg_sync(const struct agent_pkg_opts *o, const struct img_catalog *cat,
                   const char *const *wanted, size_t n, struct agent_sync_result *ret, char *err,
                   size_t errlen)
{
	int e = agent_pkg_sync_plan(o, cat, wanted, n, ret, err, errlen);

	for (size_t i = 0; e == 0 && i < ret->n; i++) {
		struct agent_pkg_change *c = &ret->changes[i];

		if (!c->to[0]) {
			const char *name = c->name;

			e = agent_pkg_remove(o, &name, 1, err, errlen);
		} else {
			char spec[140];
			const char *sp = spec;

			snprintf(spec, sizeof(spec), "%s=%s", c->name, c->to);
			e = agent_pkg_install_cat(o, cat, &sp, 1, err, errlen);
			if (e == 0) {
				/* the new version's files: a kernel or module now */
				int rootfd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				json_t *state = NULL;

				if (rootfd >= 0 &&
				    agent_pkg_state_load(rootfd, &state, NULL, 0) == 0)
					ret->reboot_required |= needs_reboot(state, cat, c->name);
				json_decref(state);
				if (rootfd >= 0)
					close(rootfd);
			}
		}
		c->done = e == 0;
	}
	return e;
}
