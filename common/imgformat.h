/* Disk image format detection by magic bytes. Formats the imager can read
 * (raw, compressed raw, tar) are accepted; virtual-disk containers (qcow2,
 * VMDK sparse and text descriptors as QEMU probes them, VHD, VHDX, VDI)
 * are refused with a message that says how to convert them. Pure: the
 * caller reads the head (>= 4 KiB advised) and, for fixed VHD, the last
 * 512 bytes of the file. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define IMG_DETECT_HEAD 4096 /* bytes of head the caller should pass */

/* Sets *ret_name to a short name ("qcow2", "vmdk", "vhd", "vhdx", "vdi",
 * "gzip", "xz", "zstd", "bzip2", "tar", "raw-gpt", "raw-mbr", "raw") and
 * *ret_refused to true for formats the imager will not take. Returns 0.
 * "raw" (no magic) is what anything unrecognised is taken to be. */
int img_detect_format(const void *head, size_t len, const char **ret_name, bool *ret_refused);

/* Checks a file's last 512 bytes for a fixed-VHD footer ("conectix").
 * Returns true and sets *ret_name ("vhd") if found. */
bool img_detect_tail(const void *tail, size_t len, const char **ret_name);

/* A one-line message for a refused format, naming the conversion command,
 * e.g. "qcow2 image: convert it to raw first: qemu-img convert -O raw
 * in.qcow2 out.img". NULL for accepted formats. */
const char *img_format_advice(const char *name);
