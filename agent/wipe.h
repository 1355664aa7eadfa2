/* Wiping a disk (or a disk image file) before it is imaged, so that nothing
 * of the previous tenant is found again. See agent/wipe.c. */
#pragma once
#include <stddef.h>
#include <stdint.h>

enum agent_wipe_mode {
	AGENT_WIPE_NONE,
	AGENT_WIPE_METADATA, /* partition tables and signatures at partition starts and ends */
	AGENT_WIPE_FULL,     /* every byte */
};

#define AGENT_WIPE_EDGE  (1024ULL * 1024)        /* metadata: bytes at each start and end */
#define AGENT_WIPE_CHUNK (1024ULL * 1024 * 1024) /* full: one step between progress calls */

/* "none" | "metadata" | "full". -EINVAL otherwise. */
int agent_wipe_mode_parse(const char *s, enum agent_wipe_mode *ret);
const char *agent_wipe_mode_name(enum agent_wipe_mode m);

/* Called after each step of a full wipe with the bytes done so far. */
typedef void (*agent_wipe_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Wipes target (a block device or a regular file). On success writes a
 * one-line account of what was done into report ("full: BLKZEROOUT
 * 8.0 GiB in 12.3 s"); on failure -errno and a one-line reason in err. */
int agent_wipe(const char *target, enum agent_wipe_mode mode, agent_wipe_progress_fn progress,
               void *progress_arg, char *report, size_t replen, char *err, size_t errlen);

/* `rackboot-agent wipe --mode M TARGET`. Exit code 0, 1 or 2. */
int agent_cmd_wipe(int argc, char **argv);
