/* `rackboot-agent update`: stage 3, the agent on the installed node. It
 * polls rackbootd for the node's desired state and brings the node there:
 * packages added, upgraded and removed transactionally, a reimage when the
 * desired image changes. See agent/update.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "agent/plan.h"

#define AGENT_CONF_PATH "/etc/rackboot/agent.conf"
#define AGENT_CONF_MAX  (64 * 1024)

/* /etc/rackboot/agent.conf, as stage 2 writes it (templates/postinstall/
 * agent.conf): "key = value" lines, '#' comments. */
struct agent_update_conf {
	char server[AGENT_URL_MAX]; /* no trailing '/' */
	char mac[18];
	char token[AGENT_TOKEN_MAX + 1];
	char repo[AGENT_URL_MAX];
	/* more hosts the repository's downloads may go to (agent/hosts.h) */
	char repo_hosts[AGENT_PLAN_HOSTS_MAX][AGENT_PLAN_HOST_LEN];
	size_t n_repo_hosts;
	char image[65], image_version[65]; /* what stage 2 wrote: the running image */
	unsigned interval_s, jitter_s;
};

/* Parses the config strictly: every key known and at most once, server,
 * mac and token present and well-formed, numbers in range (interval 5 s
 * to a day, jitter up to a day). -EINVAL with "line N: ..." in err. */
int agent_update_conf_parse(const char *text, size_t len, struct agent_update_conf *ret, char *err,
                            size_t errlen);

/* The node's desired state as rackbootd's /desired answers it. */
struct agent_desired {
	char generation[65];
	bool hold, reimage;
	char image[65], image_version[65];
	struct agent_plan_pkg *packages; /* exact pins */
	size_t n_packages;
};

/* Parses a /desired document strictly. agent_desired_fini() frees. */
int agent_desired_parse(const char *data, size_t len, struct agent_desired *ret, char *err,
                        size_t errlen);
void agent_desired_fini(struct agent_desired *d);

/* The boot entry efibootmgr's listing names for the network ("PXE",
 * "Network", "IPv4"/"IPv6", "HTTP" in its description), as 4 hex digits.
 * -ENOENT if none. */
int agent_efi_netboot_entry(const char *listing, char ret[5]);

/* The command: argv[0] is "update". Exit 0 (with --once: polled and
 * applied, or nothing to do), 1 failure, 2 usage. */
int agent_cmd_update(int argc, char **argv);

/* `rackboot-agent netboot-next`: sets BootNext as update does before a
 * reimage (agent/efivars.c). Exit 0 set, 1 not, 2 usage, 3 BIOS. */
int agent_cmd_netboot_next(int argc, char **argv);
