/* rackbootd configuration: the effective settings after the embedded
 * defaults, the config file (libconfuse) and command-line overrides.
 * config.c owns parsing and validation; everything else only reads a
 * const struct rb_config. A config that fails validation is never applied. */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum rb_dhcp_mode {
	RB_DHCP_OFF,
	RB_DHCP_PROXY, /* answer PXE clients only, never hand out addresses */
	RB_DHCP_FULL,  /* address pool, leases, reservations */
};

struct rb_dhcp_host {
	uint8_t mac[6];
	struct in_addr addr;
	char hostname[64];
};

enum rb_wipe {
	RB_WIPE_NONE,
	RB_WIPE_METADATA, /* partition tables, superblocks, signatures */
	RB_WIPE_FULL,     /* every byte (discard or zeroes) */
};

enum rb_after {
	RB_AFTER_REBOOT,
	RB_AFTER_POWEROFF,
	RB_AFTER_NONE,
	RB_AFTER_KEXEC, /* the installed kernel started by kexec, no firmware reboot */
};

/* What a provisioning node gets: one `profile "NAME" { ... }` section. */
struct rb_profile {
	char name[65];    /* img_name_is_valid() */
	char image[65];   /* name in the repository catalogue */
	char version[65]; /* exact version or "latest" */
	enum rb_wipe wipe;
	bool grow_last_partition;
	enum rb_after after;
	char disk[128]; /* "" = the agent picks; else an absolute path under /dev/ */
	/* Stage 2 (common/nodecfg.h checks each value) */
	char **package_sets; /* names of defined package_set sections, in order */
	size_t n_package_sets;
	char kernel_args[1025]; /* appended to the installed boot config; "" = none */
	char hostname[254];     /* pattern with {mac} and {ip}; "" = leave it */
	char **ssh_keys;        /* authorized_keys lines for root */
	size_t n_ssh_keys;
	unsigned root_partition; /* 0 = the largest ext4/xfs partition, else its number */
	/* the installed agent polls its desired state every update_interval_s
	 * seconds plus a random 0..update_jitter_s */
	unsigned update_interval_s, update_jitter_s;
	bool network_dhcp; /* network = "dhcp": the boot NIC, matched by MAC, by DHCP */
	int line;          /* where the section ends (its "}"), for errors */
};

/* A package a set wants: an exact version, or "" for the catalogue's
 * newest when a plan is made. */
struct rb_pkg_want {
	char name[65];
	char version[65];
};

/* One `package_set "NAME" { packages = {...} }` section. */
struct rb_package_set {
	char name[65]; /* img_name_is_valid() */
	struct rb_pkg_want *pkgs;
	size_t n_pkgs;
	int line;
};

/* Picks a profile for a node without one in the registry: one
 * `rule "NAME" { ... }` section. Every condition that is set must hold;
 * 0 and "" mean "not checked". Matched by pxe/rules.c. */
struct rb_rule {
	char name[65];      /* img_name_is_valid() */
	char profile[65];   /* a defined profile */
	char gpu_vendor[7]; /* "" or a PCI vendor id like "0x10de" */
	unsigned min_gpus;  /* gpus[], or pci[] display controllers of gpu_vendor */
	unsigned min_memory_gib;
	char cpu_model[129]; /* substring of cpu.model, case-insensitive */
	unsigned min_disks;
	unsigned min_nic_speed_mbps; /* at least one NIC this fast */
	char mac[33];                /* glob (* and ?) on "52:54:00:12:34:56" */
	char hostname[254];          /* glob on the registry's hostname */
	int line;                    /* where the section ends (its "}"), for errors */
};

struct rb_config {
	char *path; /* file it was loaded from, NULL for embedded defaults */

	/* process */
	char *user;                 /* drop to this user after binding; "" = stay */
	char *state_dir;            /* registry db, leases */
	char *interface;            /* provisioning interface; "" = all */
	struct in_addr server_addr; /* address nodes reach us at; 0 = from interface */
	int log_level;              /* syslog level */

	/* DHCP */
	enum rb_dhcp_mode dhcp_mode;
	uint16_t dhcp_port;  /* 67 */
	uint16_t proxy_port; /* 4011; 0 = off */
	struct in_addr pool_start, pool_end, netmask, router;
	struct in_addr dns[4];
	size_t n_dns;
	char *domain;
	uint32_t lease_time; /* seconds */
	struct rb_dhcp_host *hosts;
	size_t n_hosts;

	/* Boot files by client architecture (option 93), relative to the TFTP
	 * root, or for the HTTP-boot entries relative to the HTTP boot root. */
	char *boot_bios;       /* arch 0: undionly.kpxe */
	char *boot_uefi_ia32;  /* arch 6 */
	char *boot_uefi_x64;   /* arch 7 and 9: snponly.efi or ipxe.efi */
	char *boot_uefi_arm64; /* arch 11 */
	char *http_uefi_x64;   /* arch 16 (HTTPClient): path under /boot/ */
	char *http_uefi_arm64; /* arch 19 */

	/* TFTP */
	bool tftp_enable;
	uint16_t tftp_port; /* 69 */
	char *tftp_root;
	unsigned tftp_max_blksize; /* cap; further clamped by the interface MTU */
	unsigned tftp_max_window;  /* RFC 7440 cap */
	unsigned tftp_timeout_ms;  /* first retransmit timeout */
	unsigned tftp_retries;
	unsigned tftp_max_transfers;

	/* HTTP */
	uint16_t http_port;
	char *http_boot_root; /* served at /boot/ */
	char *repo_root;      /* served at /repo/ */
	char *templates_dir;  /* "" = the templates built into the binary */
	char *repo_url;       /* repository URL given to agents; "" = <base>/repo */
	/* other hosts ("host" or "host:port") the repository may redirect
	 * agents to, sent in the plan as image.repo_hosts */
	char **repo_hosts; /* one allocation, like ssh_keys */
	size_t n_repo_hosts;
	unsigned http_threads;
	unsigned http_max_conns;
	unsigned http_idle_timeout_s;   /* a connection silent this long is closed */
	unsigned http_header_timeout_s; /* ... or without a whole request header */

	/* Registry */
	char *db_path; /* "" = <state_dir>/registry.db */

	/* Operator API */
	char *api_tokens_file; /* hashes of operator tokens; "" in the file = <state_dir>/tokens */
	bool metrics_auth;     /* /metrics needs an operator token too */
	unsigned api_heartbeat_s; /* event stream: a comment after this long idle */

	/* What unknown nodes boot (discovery), relative to the HTTP boot root */
	char *discovery_kernel;
	char *discovery_initrd;
	char *discovery_cmdline;

	/* Provisioning profiles, and the one for nodes the registry names none */
	struct rb_profile *profiles;
	size_t n_profiles;
	struct rb_package_set *package_sets;
	size_t n_package_sets;
	char *default_profile; /* "" = none */

	/* Rules in file order: the first that matches a node's inventory
	 * names its profile when the registry names none. */
	struct rb_rule *rules;
	size_t n_rules;
};

/* Overrides from the command line, applied after the file. NULL = unset. */
struct rb_config_overrides {
	const char *interface;
	const char *state_dir;
	const char *root; /* sets tftp_root=<root>/tftp, http_boot_root=<root>/boot,
	                     repo_root=<root>/repo */
	const char *server_addr;
	const char *dhcp_mode;
	const char *user;
	const char *http_port;
};

/* Loads path (NULL = embedded defaults only) and applies overrides.
 * On error, prints "file:line: what is wrong (expected ...)" to err and
 * returns -EINVAL without touching *ret. */
int rb_config_load(const char *path, const struct rb_config_overrides *ovr, FILE *err,
                   struct rb_config **ret);
void rb_config_free(struct rb_config *cfg);
/* Writes the effective config in the config file syntax. */
void rb_config_print(const struct rb_config *cfg, FILE *out);
/* The profile called name, NULL if none is (or name is NULL or ""). */
const struct rb_profile *rb_config_profile(const struct rb_config *cfg, const char *name);
/* The package set called name, NULL if none is. */
const struct rb_package_set *rb_config_package_set(const struct rb_config *cfg, const char *name);
const char *rb_wipe_name(enum rb_wipe w);
const char *rb_after_name(enum rb_after a);
/* Boot file for an option 93 architecture, NULL if none is configured. */
const char *rb_config_boot_file(const struct rb_config *cfg, uint16_t arch, bool *ret_http);
