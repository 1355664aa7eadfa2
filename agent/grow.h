/* Growing the last partition of a freshly written disk to the end of the
 * disk (GPT and MBR). Only the partition table: see agent/grow.c. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* Grows the last partition of the table on fd (a disk of size bytes with
 * sector_size-byte logical sectors) to the end of the disk. 0 with a line
 * in report (also when there was nothing to do); -errno with a reason in
 * err: -ENOENT no partition table, -EBADMSG damaged table, -EINVAL a table
 * that cannot be grown safely (last partition not the highest, extended
 * partition, MBR disk of 2 TiB or more, disk smaller than the table). */
int agent_grow_fd(int fd, uint64_t size, uint32_t sector_size, char *report, size_t replen,
                  char *err, size_t errlen);

/* The same on a block device (logical sector size from the kernel, then
 * BLKRRPART) or a disk image file (512-byte sectors, or 4096 when the GPT
 * header sits there). */
int agent_grow_last_partition(const char *target, char *report, size_t replen, char *err,
                              size_t errlen);

/* CRC-32 (IEEE 802.3, as GPT uses it) of len bytes, starting from 0. */
uint32_t agent_crc32(const void *data, size_t len);

/* `rackboot-agent grow TARGET`. Exit code 0, 1 or 2. */
int agent_cmd_grow(int argc, char **argv);
