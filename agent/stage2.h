/* Stage 2 of `rackboot-agent run`: into the freshly imaged disk, the
 * plan's packages (dependencies resolved from the signed catalogue) and
 * the post-install settings, then the installed agent. See agent/stage2.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent_hosts;
struct agent_plan;
struct rb_key;
struct json_t;

/* A partition of the target as sysfs lists it, with what its first bytes
 * say it holds. */
struct agent_rootpart {
	unsigned nr;   /* the partition number */
	char name[64]; /* kernel name, e.g. "loop0p2", "nvme0n1p2" */
	unsigned major, minor;
	uint64_t size;  /* bytes */
	char fstype[8]; /* "ext4" (ext2/3/4), "xfs" or "" */
};

/* The partitions of the table in head (len bytes from the disk's start,
 * logical sector size lbs): GPT (its header at LBA 1), else MBR primaries
 * (not extended, not a protective 0xee). Each as {number, first byte,
 * bytes}; at most max. -ENOENT when there is no table. */
int agent_table_parts(const uint8_t *head, size_t len, unsigned lbs, uint64_t (*ret)[3], size_t max,
                      size_t *ret_n);

/* "ext4" or "xfs" from a filesystem's first 2 KiB (len bytes), else "". */
const char *agent_fs_type(const uint8_t *buf, size_t len);

/* The root partition: number want (0 = the largest ext4/xfs one; the
 * lowest number wins a tie). 0 with *ret_idx, or -ENOENT/-EINVAL with a
 * reason naming what was seen. */
int agent_pick_root(const struct agent_rootpart *parts, size_t n, unsigned want, size_t *ret_idx,
                    char *err, size_t errlen);

struct agent_stage2_opts {
	const struct agent_plan *plan;
	const char *target;               /* the imaged disk, a block device */
	const char *server, *mac;         /* for the installed agent's config */
	const struct rb_key *const *pubs; /* trusted keys: the catalogue's signature */
	size_t n_pubs;
	const char *pubdir; /* their files, copied into the target */
	const char *self;   /* the agent binary to install; NULL: /proc/self/exe */
	const char *arch;   /* the node's package arch; NULL: from uname */
	unsigned timeout_s, script_timeout_s;
	/* called with a one-line step before each package and the settings */
	void (*step)(void *arg, const char *step);
	void *step_arg;
	/* hosts the packages may come from (agent/hosts.h); NULL: only the
	 * repository's */
	const struct agent_hosts *hosts;
};

/* Mounts the target's root partition (auto or the plan's), installs the
 * plan's packages in dependency order (each all or nothing; the first
 * failure stops with its package and reason in err), writes the
 * post-install settings and the agent, unmounts. *ret_installed is the
 * JSON array of {"name","version"} the target's installed.json lists
 * (caller json_decref()s it). A one-line account in report. */
int agent_stage2(const struct agent_stage2_opts *o, struct json_t **ret_installed, char *report,
                 size_t replen, char *err, size_t errlen);
