/* pkgplan: from a node's profile (and the operator's choice of package
 * sets) to exact package versions, post-install settings and the desired
 * state an installed node's agent converges to.
 *
 * Versions are chosen here, on the server, so that every node of a
 * profile gets the same ones and the operator sees them in the plan: a set
 * entry without a version gets the catalogue's newest (dpkg order, any
 * architecture; the agent refuses a version its architecture lacks), an
 * entry with one must be in the catalogue as written. The agent then
 * resolves dependencies with those as pins (agent/pkgresolve.c).
 *
 * An operator may roll a set back (pxe/api_ops.c): the registry then holds
 * a pin, the set's earlier resolution, which pkgplan_resolve() uses in
 * place of the config's for each package it names.
 *
 * Owns nothing beyond the JSON it returns. No I/O, never logs. */
#include "pxe/pkgplan.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/catalog.h"
#include "common/nodecfg.h"
#include "common/sha256.h"
#include "common/util.h"
#include "pxe/config.h"

int pkgplan_sets(const struct rb_config *cfg, const struct rb_profile *p, const char *desired_json,
                 json_t **ret, char *why, size_t whylen)
{
	json_t *arr, *v;
	size_t i;

	if (desired_json && *desired_json) {
		arr = json_loads(desired_json, JSON_REJECT_DUPLICATES, NULL);
		if (!json_is_array(arr)) {
			json_decref(arr);
			rb_errf(why, whylen, "the node's package_sets is not a JSON array");
			return -EINVAL;
		}
		json_array_foreach(arr, i, v)
		{
			if (!json_is_string(v)) {
				json_decref(arr);
				rb_errf(why, whylen, "the node's package_sets holds a non-string");
				return -EINVAL;
			}
		}
	} else {
		arr = json_array();
		for (i = 0; arr && i < p->n_package_sets; i++)
			if (json_array_append_new(arr, json_string(p->package_sets[i])) < 0) {
				json_decref(arr);
				arr = NULL;
			}
		if (!arr)
			return -ENOMEM;
	}
	json_array_foreach(arr, i, v)
	{
		if (!rb_config_package_set(cfg, json_string_value(v))) {
			rb_errf(why, whylen, "package set \"%s\" is not defined in rackbootd.conf",
			        json_string_value(v));
			json_decref(arr);
			return -ENOENT;
		}
	}
	*ret = arr;
	return 0;
}

/* The newest version of name in cat (any arch), NULL if there is none. */
static const char *newest(const struct img_catalog *cat, const char *name)
{
	const char *best = NULL;

	for (size_t i = 0; i < cat->n_packages; i++)
		if (!strcmp(cat->packages[i].name, name) &&
		    (!best || img_pkg_version_cmp(cat->packages[i].version, best) > 0))
			best = cat->packages[i].version;
	return best;
}

static bool has_version(const struct img_catalog *cat, const char *name, const char *version)
{
	for (size_t i = 0; i < cat->n_packages; i++)
		if (!strcmp(cat->packages[i].name, name) &&
		    !strcmp(cat->packages[i].version, version))
			return true;
	return false;
}

int pkgplan_resolve_set(const struct rb_config *cfg, const struct img_catalog *cat, const char *set,
                        json_t **ret)
{
	const struct rb_package_set *ps = rb_config_package_set(cfg, set);
	json_t *map;

	if (!ps)
		return -ENOENT;
	map = json_object();
	if (!map)
		return -ENOMEM;
	for (size_t k = 0; k < ps->n_pkgs; k++) {
		const struct rb_pkg_want *w = &ps->pkgs[k];
		const char *ver = *w->version ? w->version : newest(cat, w->name);

		if (!ver || (*w->version && !has_version(cat, w->name, w->version))) {
			json_decref(map);
			return -ENOENT;
		}
		if (json_object_set_new(map, w->name, json_string(ver)) < 0) {
			json_decref(map);
			return -ENOMEM;
		}
	}
	*ret = map;
	return 0;
}

int pkgplan_resolve(const struct rb_config *cfg, const struct img_catalog *cat, const json_t *sets,
                    const json_t *pins, json_t **ret, char *why, size_t whylen)
{
	json_t *out = json_array(), *v, *seen = json_object();
	size_t i;
	int r = -ENOMEM;

	if (!out || !seen)
		goto fail;
	json_array_foreach(sets, i, v)
	{
		const struct rb_package_set *ps = rb_config_package_set(cfg, json_string_value(v));
		json_t *pin = json_object_get(pins, json_string_value(v));

		if (!ps) {
			rb_errf(why, whylen, "package set \"%s\" is not defined",
			        json_string_value(v));
			r = -ENOENT;
			goto fail;
		}
		for (size_t k = 0; k < ps->n_pkgs; k++) {
			const struct rb_pkg_want *w = &ps->pkgs[k];
			const char *pinned = json_string_value(json_object_get(pin, w->name));
			const char *ver = *w->version ? w->version : newest(cat, w->name);
			const char *had = json_string_value(json_object_get(seen, w->name));

			if (pinned && !has_version(cat, w->name, pinned)) {
				rb_errf(why, whylen,
				        "package set \"%s\" is rolled back to %s %s, which is no "
				        "longer in the repository catalogue (unpin the set or "
				        "index it again with pkg index)",
				        ps->name, w->name, pinned);
				r = -ENOENT;
				goto fail;
			}
			if (pinned)
				ver = pinned;
			else if (!ver || (*w->version && !has_version(cat, w->name, w->version))) {
				rb_errf(why, whylen,
				        "package set \"%s\": %s%s%s is not in the repository "
				        "catalogue (build it with rackboot-image pkg build and add "
				        "it with pkg index)",
				        ps->name, w->name, *w->version ? " " : "", w->version);
				r = -ENOENT;
				goto fail;
			}
			if (had && strcmp(had, ver) != 0) {
				rb_errf(why, whylen,
				        "package sets want %s %s and %s %s (\"%s\" is one of them)",
				        w->name, had, w->name, ver, ps->name);
				r = -EEXIST;
				goto fail;
			}
			if (had)
				continue;
			if (json_object_set_new(seen, w->name, json_string(ver)) < 0 ||
			    json_array_append_new(out, json_pack("{s:s, s:s}", "name", w->name,
			                                         "version", ver)) < 0)
				goto fail;
		}
	}
	json_decref(seen);
	*ret = out;
	return 0;
fail:
	json_decref(seen);
	json_decref(out);
	return r;
}

int pkgplan_post_install(const struct rb_profile *p, const uint8_t mac[6], const char *ip,
                         const char *node_hostname, json_t **ret, char *why, size_t whylen)
{
	char host[RB_HOSTNAME_MAX + 1] = "";
	json_t *keys, *doc;
	int r;

	if (node_hostname && *node_hostname && rb_hostname_ok(node_hostname)) {
		snprintf(host, sizeof(host), "%s", node_hostname);
	} else if (*p->hostname) {
		r = rb_hostname_expand(p->hostname, mac, ip, host, sizeof(host));
		if (r == -ENOENT) {
			rb_errf(why, whylen,
			        "hostname \"%s\" needs {ip} and the node's address is not known "
			        "yet",
			        p->hostname);
			return r;
		}
		if (r < 0) {
			rb_errf(why, whylen, "hostname \"%s\" does not give a host name",
			        p->hostname);
			return -EINVAL;
		}
	}
	keys = json_array();
	for (size_t i = 0; keys && i < p->n_ssh_keys; i++)
		if (json_array_append_new(keys, json_string(p->ssh_keys[i])) < 0) {
			json_decref(keys);
			keys = NULL;
		}
	if (!keys)
		return -ENOMEM;
	doc = json_pack(
	        "{s:s, s:o, s:s, s:I, s:I, s:I, s:s}", "hostname", host, "ssh_keys", keys,
	        "kernel_args", p->kernel_args, "root_partition", (json_int_t)p->root_partition,
	        "update_interval_s", (json_int_t)p->update_interval_s, "update_jitter_s",
	        (json_int_t)p->update_jitter_s, "network", p->network_dhcp ? "dhcp" : "image");
	if (!doc)
		return -ENOMEM;
	*ret = doc;
	return 0;
}

int pkgplan_desired(bool hold, const char *image, const char *version, const json_t *packages,
                    bool reimage, json_t **ret_doc, char ret_generation[PKGPLAN_GENERATION_LEN + 1])
{
	uint8_t h[RB_SHA256_LEN];
	char hex[RB_SHA256_HEX_LEN + 1], *text;
	json_t *doc;

	doc = json_pack("{s:b, s:{s:s, s:s}, s:O, s:b}", "hold", (int)hold, "image", "name", image,
	                "version", version, "packages", (json_t *)packages, "reimage",
	                (int)reimage);
	if (!doc)
		return -ENOMEM;
	text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text) {
		json_decref(doc);
		return -ENOMEM;
	}
	rb_sha256(text, strlen(text), h);
	free(text);
	rb_hex(h, PKGPLAN_GENERATION_LEN / 2, hex);
	if (json_object_set_new(doc, "generation", json_string(hex)) < 0) {
		json_decref(doc);
		return -ENOMEM;
	}
	memcpy(ret_generation, hex, PKGPLAN_GENERATION_LEN + 1);
	*ret_doc = doc;
	return 0;
}
