/* Hardware inventory of the node, read from /proc and /sys below a root.
 * The JSON shape is documented at the top of agent/inventory.c. */
#pragma once
#include <jansson.h>
#include <stdio.h>

/* Also list loop, ram, zram, dm-* and sr block devices. */
#define AGENT_INV_ALL_DISKS 0x1u

/* Collects the inventory of the tree below root ("/" for this machine).
 * Missing or malformed files leave their fields null or their entries out.
 * Returns 0 and a new JSON object in *ret, -errno if root cannot be opened,
 * -ENOMEM if memory runs out. */
int agent_inventory_collect(const char *root, unsigned flags, json_t **ret);

/* `rackboot-agent inventory [--root DIR] [--pretty] [--all-disks]`, writing
 * the document to out. Returns the exit code: 0 ok, 1 failure, 2 usage. */
int agent_inventory_run(int argc, char **argv, FILE *out);

/* The command table entry: agent_inventory_run() onto stdout. */
int agent_inventory_main(int argc, char **argv);
