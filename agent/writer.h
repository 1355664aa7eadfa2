/* Stage-1 image writer: a signed rackboot-image/1 manifest from a repository
 * over HTTP onto a file or block device. See agent/writer.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/fetch.h"

struct rb_key;

struct agent_image_opts {
	const char *repo;                 /* http(s)://host/repo, no trailing '/' needed */
	const struct rb_key *const *pubs; /* trusted keys, any one verifies */
	size_t n_pubs;
	const char *name, *version;
	const char *target;
	bool reimage;  /* hash what is on the target and skip matching chunks */
	bool progress; /* progress lines on stderr */
	struct agent_fetch_opts fetch;
	/* Called (if set) from the thread running agent_image_write(), every
	 * few hundred ms and at the end, with the bytes verified so far out of
	 * those to write. Must be quick: it runs in the fetch loop. */
	void (*progress_cb)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
};

struct agent_image_stats {
	uint64_t fetched_bytes; /* HTTP bodies received (manifest, signature, ranges) */
	unsigned requests;      /* HTTP requests made, retries included */
	size_t chunks_written;
	uint64_t skipped_zero;  /* chunk-size slots the manifest does not store */
	size_t skipped_present; /* chunks already on the target (reimage) */
	uint64_t usec;
};

/* Writes the image. 0, or -errno with a one-line reason in err (naming the
 * chunk or URL). On failure after the target was opened, the first and last
 * MiB of the image's disk (and of a larger device) hold zeros: no valid
 * partition table or boot sector. */
int agent_image_write(const struct agent_image_opts *o, struct agent_image_stats *ret_stats,
                      char *err, size_t errlen);

/* The "image" command: argv[0] is "image". Exit code 0, 1 or 2. */
int agent_cmd_image(int argc, char **argv);
