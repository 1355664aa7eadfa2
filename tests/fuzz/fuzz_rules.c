/* Fuzz target: profile rules over an inventory document from the network
 * (pxe/rules.c). The input is parsed as JSON (any value) and matched
 * against rules that use every condition; oracle: rules_match() returns
 * exactly the first rule for which rules_rule_matches() holds. */
#include "pxe/rules.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct rb_rule rules[] = {
	{ .name = "nv", .gpu_vendor = "0x10de", .min_gpus = 2 },
	{ .name = "gpus", .min_gpus = 1 },
	{ .name = "mem", .min_memory_gib = 64, .cpu_model = "xeon" },
	{ .name = "disks", .min_disks = 2, .min_nic_speed_mbps = 10000 },
	{ .name = "glob", .mac = "52:54:*:?a", .hostname = "*n?de*" },
	{ .name = "cpu", .cpu_model = "a" },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x5a };
	size_t n = sizeof(rules) / sizeof(rules[0]);
	const struct rb_rule *first = NULL;
	json_t *doc;

	if (size > 1024 * 1024)
		return 0;
	doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (!doc)
		return 0;
	for (size_t i = 0; i < n && !first; i++)
		if (rules_rule_matches(&rules[i], doc, "52:54:00:12:34:5a", "node-1"))
			first = &rules[i];
	if (rules_match(rules, n, doc, mac, "node-1") != first)
		abort();
	json_decref(doc);
	return 0;
}
