/* Profile rules (issue 5): the first `rule` section, in file order, whose
 * every set condition holds for a node names the node's profile.
 *
 * Conditions read the inventory document the agent posted (schema in
 * agent/inventory.c): gpus[], or with gpu_vendor the pci[] display
 * controllers (class 0x0300xx VGA, 0x0302xx 3D) of that vendor;
 * memory.total_bytes, cpu.model,
 * disks[], nics[].speed_mbps; and the node's MAC and hostname as globs.
 *
 * The document comes from the network: every member is type-checked, a list
 * is looked at only up to RULES_LIST_MAX entries (a longer one fails the
 * condition), and nothing is ever assumed present. A hostile document can
 * only fail to match. Owns nothing; must never do I/O, allocate or log. */
#include "pxe/rules.h"

#include <ctype.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

#define GIB (1024ull * 1024 * 1024)

bool rules_glob_match(const char *pat, const char *s)
{
	const char *star = NULL, *resume = NULL;

	/* Greedy with one backtrack point: the last '*' seen absorbs one more
	 * character on each mismatch, which is enough for '*' and '?' alone. */
	while (*s) {
		if (*pat == '*') {
			star = pat++;
			resume = s;
		} else if (*pat && (*pat == '?' ||
		                    tolower((unsigned char)*pat) == tolower((unsigned char)*s))) {
			pat++;
			s++;
		} else if (star) {
			pat = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

/* The list under key, or NULL if absent, not a list or too long. */
static const json_t *list_of(const json_t *inv, const char *key)
{
	const json_t *a = json_object_get(inv, key);

	if (!json_is_array(a) || json_array_size(a) > RULES_LIST_MAX)
		return NULL;
	return a;
}

static const char *str_member(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key)); /* NULL unless a string */
}

/* Without gpu_vendor, the GPUs are the agent's gpus[] list (NVIDIA compute
 * and display devices). With it, every PCI display controller of that
 * vendor counts: the BMC's VGA (ASPEED 0x1a03) and an Intel iGPU are
 * display controllers too, which is why "any vendor" does not read pci[]. */
static bool gpus_ok(const struct rb_rule *r, const json_t *inv)
{
	const json_t *list = list_of(inv, *r->gpu_vendor ? "pci" : "gpus");
	unsigned n = 0;

	if (!list)
		return false;
	for (size_t i = 0; i < json_array_size(list) && n < r->min_gpus; i++) {
		const json_t *d = json_array_get(list, i);
		const char *cls = str_member(d, "class"), *ven = str_member(d, "vendor");

		if (!json_is_object(d))
			continue;
		if (*r->gpu_vendor &&
		    (!cls || !ven || strcasecmp(ven, r->gpu_vendor) != 0 ||
		     (strncasecmp(cls, "0x0300", 6) != 0 && strncasecmp(cls, "0x0302", 6) != 0)))
			continue;
		n++;
	}
	return n >= r->min_gpus;
}

static bool memory_ok(const struct rb_rule *r, const json_t *inv)
{
	const json_t *t = json_object_get(json_object_get(inv, "memory"), "total_bytes");
	json_int_t v;

	if (!json_is_integer(t))
		return false;
	v = json_integer_value(t);
	return v >= 0 && (unsigned long long)v >= (unsigned long long)r->min_memory_gib * GIB;
}

static bool cpu_ok(const struct rb_rule *r, const json_t *inv)
{
	const char *model = str_member(json_object_get(inv, "cpu"), "model");

	return model && strcasestr(model, r->cpu_model) != NULL;
}

static bool disks_ok(const struct rb_rule *r, const json_t *inv)
{
	const json_t *disks = list_of(inv, "disks");
	unsigned n = 0;

	if (!disks)
		return false;
	for (size_t i = 0; i < json_array_size(disks) && n < r->min_disks; i++)
		if (json_is_object(json_array_get(disks, i)))
			n++;
	return n >= r->min_disks;
}

static bool nic_speed_ok(const struct rb_rule *r, const json_t *inv)
{
	const json_t *nics = list_of(inv, "nics");

	if (!nics)
		return false;
	for (size_t i = 0; i < json_array_size(nics); i++) {
		const json_t *s = json_object_get(json_array_get(nics, i), "speed_mbps");

		if (json_is_integer(s) &&
		    json_integer_value(s) >= (json_int_t)r->min_nic_speed_mbps)
			return true;
	}
	return false;
}

bool rules_rule_matches(const struct rb_rule *r, const json_t *inv, const char *mac,
                        const char *hostname)
{
	bool needs_inv = *r->gpu_vendor || r->min_gpus || r->min_memory_gib || *r->cpu_model ||
	                 r->min_disks || r->min_nic_speed_mbps;

	if (*r->mac && !rules_glob_match(r->mac, mac ? mac : ""))
		return false;
	if (*r->hostname && !(hostname && *hostname && rules_glob_match(r->hostname, hostname)))
		return false;
	if (!needs_inv)
		return true;
	if (!json_is_object(inv))
		return false;
	if ((*r->gpu_vendor || r->min_gpus) && !gpus_ok(r, inv))
		return false;
	if (r->min_memory_gib && !memory_ok(r, inv))
		return false;
	if (*r->cpu_model && !cpu_ok(r, inv))
		return false;
	if (r->min_disks && !disks_ok(r, inv))
		return false;
	if (r->min_nic_speed_mbps && !nic_speed_ok(r, inv))
		return false;
	return true;
}

const struct rb_rule *rules_match(const struct rb_rule *rules, size_t n, const json_t *inv,
                                  const uint8_t mac[6], const char *hostname)
{
	char m[18];

	rb_mac_format(mac, m);
	for (size_t i = 0; i < n; i++)
		if (rules_rule_matches(&rules[i], inv, m, hostname))
			return &rules[i];
	return NULL;
}
