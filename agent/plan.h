/* What `rackboot-agent run` is told to do: the rackboot.* parameters of the
 * kernel command line and the plan rackbootd serves. Pure parsing, no I/O;
 * see agent/plan.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/wipe.h"

#define AGENT_CMDLINE_MAX   65536 /* /proc/cmdline is read up to this many bytes */
#define AGENT_URL_MAX       1024
#define AGENT_TOKEN_MIN     32
#define AGENT_TOKEN_MAX     64
#define AGENT_PLAN_MAX      (1024U * 1024) /* a plan document larger than this is refused */
#define AGENT_PLAN_PKGS_MAX 10000          /* packages in a plan */
#define AGENT_PLAN_KEYS_MAX 256            /* SSH keys in a plan */
#define AGENT_DISK_MAX      256

/* image.repo_hosts: entries (plus the repository's own host), and the
 * length of one "host[:port]" with its NUL */
#define AGENT_PLAN_HOSTS_MAX 31
#define AGENT_PLAN_HOST_LEN  264

enum agent_mode {
	AGENT_MODE_UNSET = 0,
	AGENT_MODE_PROVISION,
	AGENT_MODE_DISCOVERY,
};

/* The node's identity and where to report; each field "" (or UNSET) when
 * not given. server has no trailing '/'; mac is lower case aa:bb:... */
struct agent_cmdline {
	char server[AGENT_URL_MAX];
	char mac[18];
	char token[AGENT_TOKEN_MAX + 1];
	enum agent_mode mode;
};

/* Checkers for one value each (also used for the command-line overrides):
 * 0 and the normalised value in ret, or -EINVAL with a reason in err. */
int agent_server_parse(const char *s, char ret[AGENT_URL_MAX], char *err, size_t errlen);
int agent_token_check(const char *s, char *err, size_t errlen);
int agent_mode_parse(const char *s, enum agent_mode *ret);
const char *agent_mode_name(enum agent_mode m);

/* Parses a kernel command line (len bytes, not NUL-terminated, may end in
 * "\n"): words split on blanks, double quotes group as the kernel does.
 * A word "--" ends the kernel's parameters (the rest is for init).
 * Only rackboot.server, .mac, .token and .mode are read, each at most once,
 * never quoted, never empty; any other rackboot.* word is an error (a typo
 * must not pass silently); other words are ignored. Missing keys stay
 * unset: the caller applies overrides and then agent_cmdline_check(). */
int agent_cmdline_parse(const char *text, size_t len, struct agent_cmdline *ret, char *err,
                        size_t errlen);

/* Server, MAC and token present? -EINVAL naming the first one missing.
 * The mode may be unset: the plan's mode is the one acted on. */
int agent_cmdline_check(const struct agent_cmdline *c, char *err, size_t errlen);

enum agent_action {
	AGENT_ACTION_INVENTORY,
	AGENT_ACTION_IMAGE,
};

enum agent_after {
	AGENT_AFTER_NONE,
	AGENT_AFTER_REBOOT,
	AGENT_AFTER_POWEROFF,
	AGENT_AFTER_KEXEC, /* the installed kernel by kexec (agent/kexec.c); else reboot */
};

struct agent_plan {
	char mac[18];
	enum agent_mode mode;
	char state[33];
	enum agent_action action;
	char profile[65]; /* "" when null or absent */
	bool has_image;
	struct {
		char repo[AGENT_URL_MAX]; /* http(s), no trailing '/' */
		char name[65], version[65];
		char type[9]; /* rackboot | plain | rootfs */
		/* Other hosts the repository may send the agent to (redirects),
		 * "host" or "host:port" (rackbootd.conf http.repo_hosts), each
		 * checked by rb_hostport_parse(); see agent/hosts.c. */
		char repo_hosts[AGENT_PLAN_HOSTS_MAX][AGENT_PLAN_HOST_LEN];
		size_t n_repo_hosts;
	} image;
	char disk[AGENT_DISK_MAX]; /* "" = pick one */
	enum agent_wipe_mode wipe;
	bool grow_last_partition;
	enum agent_after after;
	/* Stage 2: set when the plan has "post_install" (a server that knows
	 * stage 2 always sends it with "packages" and "node_token"). */
	bool has_stage2;
	struct agent_plan_pkg {
		char name[65], version[65]; /* exact, resolved by the server */
	} * packages;
	size_t n_packages;
	struct {
		char hostname[254];     /* "" = leave the image's */
		char kernel_args[1025]; /* "" = none */
		char **ssh_keys;        /* one allocation; NULL when none */
		size_t n_ssh_keys;
		unsigned root_partition; /* 0 = the largest ext4/xfs partition */
		/* the installed agent's poll of its desired state (agent.conf) */
		unsigned update_interval_s, update_jitter_s;
		bool network_dhcp; /* "network":"dhcp"; absent or "image" = the image's */
	} post;
	char node_token[AGENT_TOKEN_MAX + 1]; /* the installed agent's, "" without stage 2 */
};

/* Parses the plan. -EINVAL with a message naming the field (and what was
 * expected) for anything missing, of the wrong type or out of range;
 * -EFBIG over AGENT_PLAN_MAX. Keys the agent does not know are ignored so
 * that a newer server can add some. If mac is not NULL the plan must be
 * for that MAC. */
int agent_plan_parse(const char *data, size_t len, const char *mac, struct agent_plan *ret,
                     char *err, size_t errlen);
/* Frees what a parsed plan owns (packages, SSH keys); the plan stays
 * usable without them. A plan that was never parsed must be zeroed. */
void agent_plan_fini(struct agent_plan *pl);

const char *agent_after_name(enum agent_after a);
