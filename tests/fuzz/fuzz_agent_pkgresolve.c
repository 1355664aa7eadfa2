/* Fuzz target: package resolution over a fuzzed catalogue. Every package
 * name in it is wanted (at most 64), for the first package's arch. Oracle:
 * a failure explains itself; a success is a set with one package per name,
 * each for that arch or "all", each after everything it depends on (and
 * meeting the constraint), and no two of them in conflict. */
#include "agent/pkgresolve.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_result(const char *arch, const struct img_cat_package **out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct img_cat_package *p = out[i];

		if (strcmp(p->arch, arch) != 0 && strcmp(p->arch, "all") != 0)
			abort();
		for (size_t k = 0; k < n; k++)
			if (k != i && !strcmp(out[k]->name, p->name))
				abort();
		for (size_t j = 0; j < p->n_depends; j++) {
			struct img_dep d;
			bool found = false;

			if (img_dep_parse(p->depends[j], &d) != 0)
				abort();
			for (size_t k = 0; k < i && !found; k++)
				found = !strcmp(out[k]->name, d.name) &&
				        agent_pkg_dep_satisfied(&d, out[k]->version);
			if (!found && strcmp(d.name, p->name) != 0)
				abort();
		}
		for (size_t j = 0; j < p->n_conflicts; j++) {
			struct img_dep d;

			if (img_dep_parse(p->conflicts[j], &d) != 0)
				abort();
			for (size_t k = 0; k < n; k++)
				if (k != i && !strcmp(out[k]->name, d.name) &&
				    agent_pkg_dep_satisfied(&d, out[k]->version))
					abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct img_cat_package **out = NULL;
	const char *wanted[64];
	struct img_catalog *c = NULL;
	char err[512] = "";
	size_t n_wanted = 0, n = 0;
	int r;

	if (size > 256 * 1024)
		return 0;
	if (img_catalog_parse((const char *)data, size, &c, err, sizeof(err)) < 0)
		return 0;
	for (size_t i = 0; i < c->n_packages && n_wanted < 64; i++)
		wanted[n_wanted++] = c->packages[i].name;
	if (c->n_packages > 0) {
		const char *arch = c->packages[0].arch;

		err[0] = '\0';
		r = agent_pkg_resolve(c, arch, wanted, n_wanted, &out, &n, err, sizeof(err));
		if (r < 0 && err[0] == '\0')
			abort();
		if (r == 0) {
			check_result(arch, out, n);
			free(out);
		}
	}
	img_catalog_free(c);
	return 0;
}
