/* Input format checks and registration of plain images a site already has. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "repo.h"

/* Reads fd's head (and tail, for fixed VHD) and refuses virtual-disk
 * containers and anything that is not a raw disk (compressed or archive
 * input), with a message saying how to convert it. 0 or -EINVAL. */
int img_check_raw_input(int fd, char *err, size_t errlen);

/* Copies path into repo/plain/<basename> and lists it in the catalogue as
 * name/version with its kind (raw, raw.gz, ..., tar.zst), SHA-256 and size.
 * Refuses qcow2/VMDK/VHD/VHDX/VDI (also inside a compressed file). */
int img_register_plain(struct img_repo *r, const struct rb_key *key, const char *name,
                       const char *version, const char *path, char *err, size_t errlen);

/* The detection step alone (nothing written): sets *ret_kind. */
int img_plain_kind(const char *path, const char **ret_kind, char *err, size_t errlen);
