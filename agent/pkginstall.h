/* Stage 2: package archives of the signed catalogue installed into a root
 * directory, one package at a time, each all or nothing. See
 * agent/pkginstall.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/hosts.h"

struct rb_key;
struct img_catalog;
struct img_cat_package;

#define AGENT_PKG_SCRIPT_TIMEOUT_S 300  /* default limit of one script */
#define AGENT_PKG_OUTPUT_MAX       2048 /* script output kept for the message */
#define AGENT_PKG_META_MAX         (1024 * 1024)
#define AGENT_PKG_SCRIPT_MAX       (1024 * 1024)
#define AGENT_PKG_STATE            "var/lib/rackboot/installed.json"
#define AGENT_PKG_TMP              "var/lib/rackboot/tmp"
#define AGENT_PKG_INFO             "var/lib/rackboot/info" /* prerm, postrm of installed ones */

struct agent_pkg_opts {
	const char *repo;                 /* http(s) base URL of the repository */
	const struct rb_key *const *pubs; /* trusted keys, any one verifies */
	size_t n_pubs;
	const char *root;          /* the target root directory */
	const char *arch;          /* the node's; NULL: agent_pkg_node_arch() */
	unsigned script_timeout_s; /* 0 = AGENT_PKG_SCRIPT_TIMEOUT_S */
	unsigned timeout_s;        /* HTTP connect timeout and low-speed window; 0 = 30 */
	unsigned retries;          /* HTTP failed requests in a row; 0 = 4 */
	bool verbose;              /* a line per package on stderr */
	/* Hosts the catalogue and packages may come from, redirects
	 * included (agent/hosts.h); NULL: only the repository's. */
	const struct agent_hosts *hosts;
};

/* ---- pure helpers (unit tested) ---- */

/* Splits "NAME=VERSION" (both [A-Za-z0-9._+-]{1,64}). -EINVAL otherwise. */
int agent_pkg_spec_parse(const char *spec, char ret_name[65], char ret_version[65]);

/* The package architecture of a uname machine: x86_64 -> amd64,
 * aarch64 -> arm64, i686/i586/i486/i386 -> i386, else the machine name. */
const char *agent_pkg_arch_of_machine(const char *machine);

/* The catalogue entry name/version for arch (or arch "all"); an exact
 * arch match wins over "all". NULL if none. */
const struct img_cat_package *agent_pkg_find(const struct img_catalog *c, const char *name,
                                             const char *version, const char *arch);

/* Normalises a payload member name in place (drops leading "./" and
 * trailing "/") and checks it: relative, no "..", "." or empty component,
 * not under .rackboot/. false if it may not be installed. */
bool agent_pkg_member_ok(char *path);

/* Installs the packages specs[0..n) ("NAME=VERSION", in that order) into
 * o->root. Each package is atomic: on failure, what it changed in the root
 * is undone and the packages before it stay installed (and recorded in
 * <root>/var/lib/rackboot/installed.json). 0, or -errno with a one-line
 * reason naming the package (and script) in err. The caller must have
 * called curl_global_init(). Changes the working directory while it
 * extracts (restored before returning). */
int agent_pkg_install(const struct agent_pkg_opts *o, const char *const *specs, size_t n, char *err,
                      size_t errlen);

/* The steps of agent_pkg_install(): the repository's catalogue fetched
 * and its signature checked with o->pubs before it is parsed (caller
 * frees *ret with img_catalog_free()), and the install from a catalogue
 * the caller already holds (stage 2 resolves dependencies from it). */
int agent_pkg_fetch_catalog(const struct agent_pkg_opts *o, struct img_catalog **ret, char *err,
                            size_t errlen);
int agent_pkg_install_cat(const struct agent_pkg_opts *o, const struct img_catalog *c,
                          const char *const *specs, size_t n, char *err, size_t errlen);

/* Removes the installed packages names[0..n) from o->root (only root,
 * script_timeout_s and verbose of o are used), each all or nothing: its
 * prerm, its files moved aside (paths another package lists stay), its
 * postrm, its installed.json entry dropped; a failure puts everything
 * back. -ENOENT for a package that is not installed. */
int agent_pkg_remove(const struct agent_pkg_opts *o, const char *const *names, size_t n, char *err,
                     size_t errlen);

/* The "pkg-install" command: argv[0] is "pkg-install". Exit 0, 1 or 2. */
int agent_cmd_pkg_install(int argc, char **argv);
/* The "pkg-remove" command. Exit 0, 1 or 2. */
int agent_cmd_pkg_remove(int argc, char **argv);
