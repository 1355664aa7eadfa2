/* ls and diff: what a repository holds and what an update costs. */
#pragma once
#include <stdio.h>

#include "repo.h"

/* One line per image version: disk, data, stored bytes, chunks, chunks
 * shared with other images; then the repository's pack bytes. */
int img_report_ls(struct img_repo *r, FILE *out, char *err, size_t errlen);

/* What a node holding name/v1 fetches to get name/v2 (chunks whose hash at
 * the same offset differs), as key value lines. */
int img_report_diff(struct img_repo *r, const char *name, const char *v1, const char *v2, FILE *out,
                    char *err, size_t errlen);
