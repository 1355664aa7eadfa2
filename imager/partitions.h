/* MBR/GPT partition-table summary of a raw disk, for display in manifests. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/manifest.h"

/* Parses the partition table from the disk's first sectors (head: the
 * first len bytes of the disk; 32 KiB is enough for a standard GPT with
 * 128 entries) and adds entries to m (m->table set to "gpt", "mbr" or
 * "none"). Bounded: never reads past head[len]. Returns 0 or -ENOMEM. */
int img_part_scan(const uint8_t *head, size_t len, uint64_t disk_size, struct img_manifest *m);
