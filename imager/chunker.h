/* The build pipeline: a raw disk image (file or block device) into packs
 * and a signed manifest in a repository. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repo.h"

#define IMG_DEFAULT_CHUNK_SIZE (64U * 1024)
#define IMG_DEFAULT_LEVEL      3
#define IMG_DEFAULT_PACK_SIZE  (16ULL * 1024 * 1024)

struct img_build_opts {
	const char *name, *version;
	uint32_t chunk_size; /* power of two, 4 KiB..16 MiB */
	int level;           /* zstd level */
	uint64_t pack_size;  /* start a new pack after this many bytes */
	unsigned threads;    /* compression workers; 0 = number of CPUs */
	int progress;        /* 0 none, 1 plain lines, 2 terminal bar */
};

struct img_build_stats {
	uint64_t disk_size, data_bytes, stored_new, stored_total;
	uint64_t chunks, chunks_zero, chunks_dedup, packs_new;
	double seconds;
};

/* Reads fd (size bytes, a multiple of 512) and publishes name/version into
 * the repository, signed with key. is_file enables hole skipping with
 * SEEK_DATA. -errno with a message in err. */
int img_build(struct img_repo *r, const struct rb_key *key, const struct img_build_opts *o, int fd,
              uint64_t size, bool is_file, struct img_build_stats *ret, char *err, size_t errlen);

/* Progress display shared with extract: bytes, rate and ETA on stderr. */
struct img_progress {
	const char *what;
	int mode; /* 0 none, 1 lines, 2 terminal */
	uint64_t total, start_us, last_us;
};
void img_progress_init(struct img_progress *p, const char *what, int mode, uint64_t total);
void img_progress_update(struct img_progress *p, uint64_t done, bool final);
