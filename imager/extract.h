/* Reassembling a raw disk image from a repository. */
#pragma once
#include <stddef.h>

#include "repo.h"

/* Verifies the manifest's signature against pubs, then writes every chunk
 * (each checked against its SHA-256 before it is written) at its offset in
 * out_path. A regular file is created sparse: zero ranges stay holes; a
 * block device gets zeros written over the ranges the image does not
 * store. progress: 0 none, 1 lines, 2 terminal. */
int img_extract(struct img_repo *r, const struct rb_key *const *pubs, size_t n_pubs,
                const char *name, const char *version, const char *out_path, int progress,
                char *err, size_t errlen);
