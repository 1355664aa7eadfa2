/* Package set resolution: from the signed catalogue's package entries, the
 * node's architecture and the names asked for, the exact packages to
 * download and the order to install them in.
 *
 * The candidates (arch or "all") are sorted by name, then version from
 * highest (dpkg's order), then the node's own arch before "all"; each
 * distinct name is a group, and the group's index is its rank by name, so
 * a min-heap of group indices gives "ties by name" in the topological sort
 * for free. Choice is greedy and breadth first (see pkgresolve.h); the
 * install order is Kahn's algorithm; when it stalls, every package left
 * has a dependency left, so following the smallest one from the smallest
 * package must come back on itself: that loop is the cycle reported.
 *
 * Owns only its scratch arrays and the result array; the result points
 * into the catalogue. Pure: no I/O, no logging, never trusts that the
 * catalogue was validated (relations are parsed again), bounded by
 * AGENT_PKG_RESOLVE_MAX chosen packages and IMG_CAT_REL_MAX relations each.
 * Must never pick a package for another architecture. */
#include "agent/pkgresolve.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* ---- version order: dpkg's verrevcmp, in common/catalog.c ---- */

int agent_pkg_version_cmp(const char *a, const char *b)
{
	return img_pkg_version_cmp(a, b);
}

bool agent_pkg_dep_satisfied(const struct img_dep *d, const char *version)
{
	int c;

	if (d->op == IMG_DEP_ANY)
		return true;
	c = agent_pkg_version_cmp(version, d->version);
	switch (d->op) {
	case IMG_DEP_EQ:
		return c == 0;
	case IMG_DEP_GE:
		return c >= 0;
	case IMG_DEP_LE:
		return c <= 0;
	case IMG_DEP_GT:
		return c > 0;
	case IMG_DEP_LT:
		return c < 0;
	default:
		return false;
	}
}

/* ---- resolution ---- */

struct group {
	const char *name;
	size_t first, count;                   /* in ctx.cands */
	const struct img_cat_package *chosen;  /* NULL until needed */
	const struct img_cat_package *chooser; /* NULL: asked for by the caller */
};

struct ctx {
	const char *arch;
	const struct img_cat_package **cands;
	size_t n_cands;
	struct group *groups;
	size_t n_groups;
	size_t *nodes; /* chosen groups, in the order chosen */
	size_t n_nodes;
	char *err;
	size_t errlen;
};

static int cand_cmp(const void *x, const void *y, void *arg)
{
	const struct img_cat_package *a = *(const struct img_cat_package *const *)x;
	const struct img_cat_package *b = *(const struct img_cat_package *const *)y;
	const char *arch = arg;
	int r = strcmp(a->name, b->name);

	if (r)
		return r;
	r = agent_pkg_version_cmp(b->version, a->version); /* highest first */
	if (r)
		return r;
	r = strcmp(a->version, b->version); /* "1.0" and "1.0-0": deterministic */
	if (r)
		return r;
	r = (strcmp(b->arch, arch) == 0) - (strcmp(a->arch, arch) == 0); /* own arch first */
	return r ? r : strcmp(a->arch, b->arch);
}

static int build_groups(struct ctx *c, const struct img_catalog *cat)
{
	for (size_t i = 0; i < cat->n_packages; i++) {
		const struct img_cat_package *p = &cat->packages[i];

		if (!strcmp(p->arch, c->arch) || !strcmp(p->arch, "all"))
			c->cands[c->n_cands++] = p;
	}
	qsort_r(c->cands, c->n_cands, sizeof(*c->cands), cand_cmp, (void *)c->arch);
	for (size_t i = 0; i < c->n_cands; i++) {
		if (c->n_groups == 0 ||
		    strcmp(c->groups[c->n_groups - 1].name, c->cands[i]->name)) {
			c->groups[c->n_groups] =
			        (struct group){ .name = c->cands[i]->name, .first = i };
			c->n_groups++;
		}
		c->groups[c->n_groups - 1].count++;
	}
	return 0;
}

static struct group *find_group(const struct ctx *c, const char *name)
{
	size_t lo = 0, hi = c->n_groups;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(c->groups[mid].name, name);

		if (r == 0)
			return &c->groups[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* "foo (>= 2)" or "foo" into buf. */
static const char *dep_str(const struct img_dep *d, char *buf, size_t len)
{
	if (d->op == IMG_DEP_ANY)
		snprintf(buf, len, "%s", d->name);
	else
		snprintf(buf, len, "%s (%s %s)", d->name, img_dep_op_str(d->op), d->version);
	return buf;
}

/* "wanted" or "pkg 1.0" into buf. */
static const char *who(const struct img_cat_package *p, char *buf, size_t len)
{
	if (!p)
		snprintf(buf, len, "the wanted list");
	else
		snprintf(buf, len, "%s %s", p->name, p->version);
	return buf;
}

static int missing(struct ctx *c, const struct img_dep *d, const struct group *g,
                   const struct img_cat_package *by)
{
	char w[160], ds[160], have[256] = "";
	size_t off = 0;

	for (size_t i = 0; g && i < g->count && off < sizeof(have); i++) {
		int k = snprintf(have + off, sizeof(have) - off, "%s%s", i ? ", " : "",
		                 c->cands[g->first + i]->version);

		if (k < 0)
			break;
		off += (size_t)k;
	}
	if (!g)
		rb_errf(c->err, c->errlen,
		        "%s needs %s: no package %s for arch %s or all in the catalogue (publish "
		        "it with pkg index)",
		        who(by, w, sizeof(w)), dep_str(d, ds, sizeof(ds)), d->name, c->arch);
	else
		rb_errf(c->err, c->errlen,
		        "%s needs %s: the catalogue has only %s %s for arch %s or all",
		        who(by, w, sizeof(w)), dep_str(d, ds, sizeof(ds)), d->name, have, c->arch);
	return -ENOENT;
}

/* Whether version also meets every other constraint by puts on d's name
 * ("lib (>= 1)", "lib (<< 2)" is one range, not two choices). */
static bool meets_all(const struct img_dep *d, const struct img_cat_package *by,
                      const char *version)
{
	if (!agent_pkg_dep_satisfied(d, version))
		return false;
	for (size_t j = 0; by && j < by->n_depends; j++) {
		struct img_dep o;

		if (img_dep_parse(by->depends[j], &o) == 0 && !strcmp(o.name, d->name) &&
		    !agent_pkg_dep_satisfied(&o, version))
			return false;
	}
	return true;
}

static int require(struct ctx *c, const struct img_dep *d, const struct img_cat_package *by)
{
	struct group *g = find_group(c, d->name);
	char w[160], w2[160], ds[160];

	if (!g)
		return missing(c, d, NULL, by);
	if (g->chosen) {
		if (agent_pkg_dep_satisfied(d, g->chosen->version))
			return 0;
		rb_errf(c->err, c->errlen, "%s needs %s, but %s %s is already chosen (for %s)",
		        who(by, w, sizeof(w)), dep_str(d, ds, sizeof(ds)), g->chosen->name,
		        g->chosen->version, who(g->chooser, w2, sizeof(w2)));
		return -EEXIST;
	}
	for (size_t i = 0; i < g->count; i++) {
		const struct img_cat_package *p = c->cands[g->first + i];

		if (!meets_all(d, by, p->version))
			continue;
		if (c->n_nodes >= AGENT_PKG_RESOLVE_MAX) {
			rb_errf(c->err, c->errlen, "more than %d packages needed (at %s)",
			        AGENT_PKG_RESOLVE_MAX, p->name);
			return -E2BIG;
		}
		g->chosen = p;
		g->chooser = by;
		c->nodes[c->n_nodes++] = (size_t)(g - c->groups);
		return 0;
	}
	return missing(c, d, g, by);
}

static int parse_rel(struct ctx *c, const struct img_cat_package *p, const char *what,
                     const char *s, struct img_dep *d)
{
	if (img_dep_parse(s, d) == 0)
		return 0;
	rb_errf(c->err, c->errlen, "%s %s: %s entry is not \"name\" or \"name (OP version)\"",
	        p->name, p->version, what);
	return -EINVAL;
}

static int parse_wanted(struct ctx *c, const char *s, struct img_dep *d)
{
	const char *eq = s ? strchr(s, '=') : NULL;
	size_t n = eq ? (size_t)(eq - s) : (s ? strlen(s) : 0);

	memset(d, 0, sizeof(*d));
	if (n > 0 && n < sizeof(d->name)) {
		memcpy(d->name, s, n);
		d->name[n] = '\0';
		d->op = eq ? IMG_DEP_EQ : IMG_DEP_ANY;
		if (img_name_is_valid(d->name) && (!eq || (strlen(eq + 1) < sizeof(d->version) &&
		                                           img_pkg_version_is_valid(eq + 1)))) {
			if (eq)
				memcpy(d->version, eq + 1, strlen(eq + 1) + 1);
			return 0;
		}
	}
	return rb_errf(c->err, c->errlen,
	               "wanted \"%.80s\": expected NAME or NAME=VERSION ([A-Za-z0-9._+-]{1,64})",
	               s ? s : "(null)");
}

static int choose(struct ctx *c, const char *const *wanted, size_t n_wanted)
{
	struct img_dep d;
	int r;

	/* pins first, so "foo" then "foo=1" means foo 1 */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n_wanted; i++) {
			r = parse_wanted(c, wanted[i], &d);
			if (r < 0)
				return r;
			if ((d.op == IMG_DEP_EQ) != (pass == 0))
				continue;
			r = require(c, &d, NULL);
			if (r < 0)
				return r;
		}
	}
	/* breadth first: nodes grows while it is walked */
	for (size_t k = 0; k < c->n_nodes; k++) {
		const struct img_cat_package *p = c->groups[c->nodes[k]].chosen;

		if (p->n_depends > IMG_CAT_REL_MAX || (p->n_depends && !p->depends))
			return rb_errf(c->err, c->errlen, "%s %s: more than %d depends", p->name,
			               p->version, IMG_CAT_REL_MAX);
		for (size_t j = 0; j < p->n_depends; j++) {
			r = parse_rel(c, p, "depends", p->depends[j], &d);
			if (r < 0)
				return r;
			r = require(c, &d, p);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int check_conflicts(struct ctx *c)
{
	char ds[160];

	for (size_t gi = 0; gi < c->n_groups; gi++) {
		const struct img_cat_package *p = c->groups[gi].chosen;

		if (!p)
			continue;
		if (p->n_conflicts > IMG_CAT_REL_MAX || (p->n_conflicts && !p->conflicts))
			return rb_errf(c->err, c->errlen, "%s %s: more than %d conflicts", p->name,
			               p->version, IMG_CAT_REL_MAX);
		for (size_t j = 0; j < p->n_conflicts; j++) {
			const struct group *g;
			struct img_dep d;
			int r = parse_rel(c, p, "conflicts", p->conflicts[j], &d);

			if (r < 0)
				return r;
			if (!strcmp(d.name, p->name))
				continue; /* Debian's "only one version of me" idiom */
			g = find_group(c, d.name);
			if (!g || !g->chosen || !agent_pkg_dep_satisfied(&d, g->chosen->version))
				continue;
			rb_errf(c->err, c->errlen,
			        "%s %s conflicts with %s %s (its conflicts: %s); drop one of them "
			        "from the wanted list or pin another version",
			        p->name, p->version, g->chosen->name, g->chosen->version,
			        dep_str(&d, ds, sizeof(ds)));
			return -EEXIST;
		}
	}
	return 0;
}

/* ---- install order ---- */

struct graph {
	size_t *dep_start, *deps; /* per node: its dependencies (node indices), CSR */
	size_t *rev_start, *rev;  /* per node: who depends on it */
	size_t *indeg;
	size_t *node_of; /* group -> node, SIZE_MAX when not chosen */
};

static void graph_free(struct graph *g)
{
	free(g->dep_start);
	free(g->deps);
	free(g->rev_start);
	free(g->rev);
	free(g->indeg);
	free(g->node_of);
}

/* Dependencies as node indices, self-dependencies dropped. Every relation
 * parsed here was parsed by choose(), and every target chosen. */
static int graph_build(struct ctx *c, struct graph *gr)
{
	size_t n = c->n_nodes, n_edges = 0, k = 0;

	gr->dep_start = calloc(n + 1, sizeof(size_t));
	gr->rev_start = calloc(n + 1, sizeof(size_t));
	gr->indeg = calloc(n ? n : 1, sizeof(size_t));
	gr->node_of = malloc((c->n_groups ? c->n_groups : 1) * sizeof(size_t));
	gr->deps = malloc((n * IMG_CAT_REL_MAX + 1) * sizeof(size_t));
	if (!gr->dep_start || !gr->rev_start || !gr->indeg || !gr->node_of || !gr->deps)
		return -ENOMEM;
	for (size_t i = 0; i < c->n_groups; i++)
		gr->node_of[i] = SIZE_MAX;
	for (size_t i = 0; i < n; i++)
		gr->node_of[c->nodes[i]] = i;
	for (size_t i = 0; i < n; i++) {
		const struct img_cat_package *p = c->groups[c->nodes[i]].chosen;

		gr->dep_start[i] = k;
		for (size_t j = 0; j < p->n_depends; j++) {
			struct img_dep d;
			const struct group *g;

			if (img_dep_parse(p->depends[j], &d) < 0 || !(g = find_group(c, d.name)) ||
			    gr->node_of[g - c->groups] == SIZE_MAX)
				return -EINVAL; /* cannot happen after choose() */
			if (gr->node_of[g - c->groups] == i)
				continue;
			gr->deps[k++] = gr->node_of[g - c->groups];
		}
	}
	gr->dep_start[n] = n_edges = k;
	gr->rev = malloc((n_edges + 1) * sizeof(size_t));
	if (!gr->rev)
		return -ENOMEM;
	for (size_t e = 0; e < n_edges; e++)
		gr->rev_start[gr->deps[e] + 1]++;
	for (size_t i = 0; i < n; i++)
		gr->rev_start[i + 1] += gr->rev_start[i];
	{
		size_t *fill = gr->indeg; /* borrowed as a cursor, reset below */

		for (size_t i = 0; i < n; i++)
			for (size_t e = gr->dep_start[i]; e < gr->dep_start[i + 1]; e++)
				gr->rev[gr->rev_start[gr->deps[e]] + fill[gr->deps[e]]++] = i;
	}
	for (size_t i = 0; i < n; i++)
		gr->indeg[i] = gr->dep_start[i + 1] - gr->dep_start[i];
	return 0;
}

/* Min-heap of node indices ordered by group index, i.e. by name. */
static void heap_push(size_t *h, size_t *len, size_t v, const size_t *key)
{
	size_t i = (*len)++;

	h[i] = v;
	while (i > 0 && key[h[(i - 1) / 2]] > key[h[i]]) {
		size_t p = (i - 1) / 2, t = h[p];

		h[p] = h[i];
		h[i] = t;
		i = p;
	}
}

static size_t heap_pop(size_t *h, size_t *len, const size_t *key)
{
	size_t top = h[0], i = 0;

	h[0] = h[--(*len)];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i, t;

		if (l < *len && key[h[l]] < key[h[m]])
			m = l;
		if (r < *len && key[h[r]] < key[h[m]])
			m = r;
		if (m == i)
			break;
		t = h[m];
		h[m] = h[i];
		h[i] = t;
		i = m;
	}
	return top;
}

/* Called when Kahn stalled: placed[] marks the nodes already ordered. */
static int report_cycle(struct ctx *c, const struct graph *gr, const bool *placed, size_t *pos,
                        size_t *path)
{
	size_t n = c->n_nodes, cur = SIZE_MAX, len = 0, off;

	for (size_t i = 0; i < n; i++) {
		pos[i] = SIZE_MAX;
		if (!placed[i] && (cur == SIZE_MAX || c->nodes[i] < c->nodes[cur]))
			cur = i;
	}
	while (pos[cur] == SIZE_MAX) {
		size_t next = SIZE_MAX;

		pos[cur] = len;
		path[len++] = cur;
		for (size_t e = gr->dep_start[cur]; e < gr->dep_start[cur + 1]; e++) {
			size_t d = gr->deps[e];

			if (!placed[d] && (next == SIZE_MAX || c->nodes[d] < c->nodes[next]))
				next = d;
		}
		if (next == SIZE_MAX)
			return rb_errf(c->err, c->errlen, "internal error in cycle search");
		cur = next;
	}
	rb_errf(c->err, c->errlen, "dependency cycle: ");
	if (c->err && c->errlen > 0) {
		off = strlen(c->err);
		for (size_t i = pos[cur]; i <= len && off < c->errlen; i++) {
			size_t node = i < len ? path[i] : cur;
			int k = snprintf(c->err + off, c->errlen - off, "%s%s",
			                 i > pos[cur] ? " -> " : "",
			                 c->groups[c->nodes[node]].name);

			if (k < 0)
				break;
			off += (size_t)k;
		}
		if (off < c->errlen)
			snprintf(c->err + off, c->errlen - off,
			         " (each needs the next; break the loop in the packages' depends)");
	}
	return -ELOOP;
}

static int install_order(struct ctx *c, const struct img_cat_package **out)
{
	size_t n = c->n_nodes, hlen = 0, done = 0;
	struct graph gr = { 0 };
	size_t *heap = malloc((n + 1) * sizeof(size_t));
	size_t *path = malloc((n + 1) * sizeof(size_t));
	bool *placed = calloc(n + 1, sizeof(bool));
	int r;

	if (!heap || !path || !placed) {
		r = -ENOMEM;
		goto out;
	}
	r = graph_build(c, &gr);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (gr.indeg[i] == 0)
			heap_push(heap, &hlen, i, c->nodes);
	while (hlen > 0) {
		size_t v = heap_pop(heap, &hlen, c->nodes);

		placed[v] = true;
		out[done++] = c->groups[c->nodes[v]].chosen;
		for (size_t e = gr.rev_start[v]; e < gr.rev_start[v + 1]; e++)
			if (--gr.indeg[gr.rev[e]] == 0)
				heap_push(heap, &hlen, gr.rev[e], c->nodes);
	}
	if (done < n)
		r = report_cycle(c, &gr, placed, heap, path);
out:
	graph_free(&gr);
	free(heap);
	free(path);
	free(placed);
	return r;
}

int agent_pkg_resolve(const struct img_catalog *cat, const char *arch, const char *const *wanted,
                      size_t n_wanted, const struct img_cat_package ***ret, size_t *ret_n,
                      char *err, size_t errlen)
{
	struct ctx c = { .arch = arch, .err = err, .errlen = errlen };
	const struct img_cat_package **out = NULL;
	size_t n_all;
	int r;

	if (err && errlen)
		err[0] = '\0';
	if (!cat || !arch || !img_name_is_valid(arch) || (n_wanted > 0 && !wanted))
		return rb_errf(err, errlen, "arch \"%.40s\": expected [A-Za-z0-9._+-]{1,64}",
		               arch ? arch : "(null)");
	if (n_wanted > AGENT_PKG_RESOLVE_MAX)
		return rb_errf(err, errlen, "%zu packages wanted, more than %d", n_wanted,
		               AGENT_PKG_RESOLVE_MAX);
	n_all = cat->n_packages ? cat->n_packages : 1;
	c.cands = malloc(n_all * sizeof(*c.cands));
	c.groups = malloc(n_all * sizeof(*c.groups));
	c.nodes = malloc(AGENT_PKG_RESOLVE_MAX * sizeof(*c.nodes));
	if (!c.cands || !c.groups || !c.nodes) {
		r = -ENOMEM;
		goto out;
	}
	r = build_groups(&c, cat);
	if (r < 0)
		goto out;
	r = choose(&c, wanted, n_wanted);
	if (r < 0)
		goto out;
	r = check_conflicts(&c);
	if (r < 0)
		goto out;
	out = malloc((c.n_nodes ? c.n_nodes : 1) * sizeof(*out));
	if (!out) {
		r = -ENOMEM;
		goto out;
	}
	r = install_order(&c, out);
	if (r < 0)
		goto out;
	*ret = out;
	*ret_n = c.n_nodes;
	out = NULL;
out:
	free(out);
	free(c.cands);
	free(c.groups);
	free(c.nodes);
	return r;
}
