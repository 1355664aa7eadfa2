/* Rootfs tarballs onto a block device: a new GPT (ESP + root), the file
 * systems made by the system's tools, the tarball extracted into the root.
 * See agent/rootfs.c. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/plain.h"

struct agent_stream_opts;

#define AGENT_ROOTFS_ESP_MIB 256 /* ESP size; both partitions start 1 MiB aligned */

/* Writes the tarball p (streamed as so describes, compressed as f) onto
 * o->target, which must be a block device. 0, or -errno with a one-line
 * reason in err; on failure after the disk was partitioned its first and
 * last MiB are zeroed (no partition table left). Adds to ret's counters. */
int agent_rootfs_write(const struct agent_plain_opts *o, const struct img_cat_plain *p,
                       const struct agent_stream_opts *so, enum agent_plain_filter f,
                       struct agent_plain_stats *ret, char *err, size_t errlen);

/* Runs argv[0] (found in PATH; environment: PATH and LC_ALL=C only) with
 * input (may be NULL) on its stdin, stdout discarded. 0 if it exits 0;
 * else -errno (-ENOENT: not installed) with err naming the tool, its exit
 * status and the end of its stderr on one line. */
int agent_tool_run(const char *const argv[], const char *input, char *err, size_t errlen);

/* Reads GPT entry idx (0-based) from head (len bytes from the disk's
 * start, LBA size lbs): its first and last LBA. -EINVAL if there is no
 * GPT header at LBA 1 or the entry lies beyond len, -ENOENT if unused. No
 * CRC check: for a table just written and read back. */
int agent_gpt_entry(const uint8_t *head, size_t len, unsigned lbs, unsigned idx,
                    uint64_t *ret_first, uint64_t *ret_last);

struct agent_part {
	char name[64];       /* e.g. "loop3p2", "nvme0n1p2", "sda2" */
	dev_t dev;           /* its device number */
	uint64_t start, len; /* in 512-byte sectors */
};

/* Finds partition partno of the disk whose device number is disk in
 * sysfs (sysfs: "/sys", or a copy for tests): the entry below
 * dev/block/MAJ:MIN whose "partition" file holds partno. -ENOENT if the
 * kernel has no such partition. */
int agent_sysfs_partition(const char *sysfs, dev_t disk, unsigned partno, struct agent_part *ret);
