/* `rackboot-agent run`: what the boot initramfs runs. Reads its identity
 * from the kernel command line, asks rackbootd for the plan, reports the
 * inventory and carries the plan out (wipe, image, grow) with status and
 * progress reports. See agent/run.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent_run_opts {
	const char *cmdline_path;                /* default /proc/cmdline */
	const char *server, *mac, *token, *mode; /* override the command line when set */
	const char *pubdir;        /* trusted keys, *.pub; default /etc/rackboot/trusted */
	const char *target;        /* overrides the plan's disk */
	const char *sysroot;       /* inventory and disk discovery root; default "/" */
	bool no_after;             /* never reboot or power off */
	unsigned timeout_s;        /* connect timeout and stall window per request */
	unsigned retries;          /* extra attempts for the plan and state changes */
	uint64_t max_rate;         /* image bytes/s per transfer, 0 = unlimited */
	unsigned script_timeout_s; /* stage 2 package scripts; 0 = 300 */
};

/* Picks the disk to image when the plan leaves it to the agent: among
 * sysroot/sys/block/<name> (skipping loop, ram, zram, sr, fd, nbd, md<N>
 * and dm-<N>), the non-removable, writable disks of at least min_size
 * bytes, the smallest (then the first by name in version order). Writes
 * "/dev/<name>" into ret. -ENODEV with what was seen in err when none fits. */
int agent_pick_disk(const char *sysroot, uint64_t min_size, char *ret, size_t retlen, char *err,
                    size_t errlen);

/* Runs the whole flow. Returns the exit code: 0 done, 1 failed (status
 * "failed" sent with the reason where the server could be reached), 2 usage. */
int agent_run(const struct agent_run_opts *o);

/* The command table entry. */
int agent_cmd_run(int argc, char **argv);
