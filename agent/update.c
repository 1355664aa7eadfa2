/* update: stage 3, `rackboot-agent update` on the installed node (the
 * systemd unit or init script stage 2 installed starts it).
 *
 * Reads /etc/rackboot/agent.conf (server, MAC, the node token stage 2
 * got in the plan, repository, the image it wrote, poll interval and
 * jitter) and loops:
 *   1. GET <server>/api/v1/nodes/<mac>/desired with "If-None-Match" of the
 *      generation it last acted on: an unchanged state costs one 304.
 *   2. hold: nothing changes (the generation is kept, so the release is
 *      a change again).
 *   3. reimage (the operator asked, or the desired image is not the one
 *      stage 2 wrote): status "reimage", the next boot made a network
 *      boot (on UEFI, BootNext set through efivarfs to the firmware's
 *      network entry for this node's MAC, agent/efivars.c; on BIOS the
 *      firmware's boot order must try the network first, and rackbootd
 *      now serves the provisioning boot), sync, reboot (not with --no-after). Stage 1 then fetches
 * only the chunks that changed.
 *   4. packages: the signed catalogue fetched and verified, the desired
 *      pins resolved with their dependencies, the difference to
 *      installed.json applied package by package (agent/pkgupdate.c,
 *      each all or nothing), status "updating" before and "ready" (with
 *      the installed image and packages, and reboot_required) or "failed"
 *      (package and reason) after. A failed generation is not tried again
 *      until the desired state changes.
 *   5. sleep interval + a random 0..jitter seconds (nodes spread their
 *      polls), or stop after one round with --once.
 * The generation acted on and the result are kept in
 * var/lib/rackboot/desired.state; reboot_required as
 * /run/rackboot/reboot-required (gone after the reboot).
 *
 * Owns its API connection and keys. Never applies a state the server did
 * not send whole and well-formed; never prints the token; SIGTERM waits
 * for the package in progress. */
#include "agent/update.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/efivars.h"
#include "agent/hosts.h"
#include "agent/pkginstall.h"
#include "agent/pkgstate.h"
#include "agent/pkgupdate.h"
#include "agent/plain.h"
#include "agent/postinst.h"
#include "agent/report.h"
#include "common/catalog.h"
#include "common/log.h"
#include "common/sign.h"
#include "common/util.h"

#define MAX_KEYS    16
#define STATE_FILE  "var/lib/rackboot/desired.state"
#define REBOOT_FLAG "run/rackboot/reboot-required"
#define DESIRED_MAX (1024 * 1024)
#define CAPTURE_MAX 65536

extern char **environ;

static volatile sig_atomic_t stopping;

/* ---- agent.conf ------------------------------------------------------------------------ */

static int conf_line(struct agent_update_conf *c, const char *key, const char *val, unsigned *seen,
                     char *err, size_t errlen)
{
	static const char *const keys[] = { "server",     "mac",      "token",
		                            "repo",       "image",    "image_version",
		                            "interval_s", "jitter_s", "repo_hosts" };
	size_t k;
	long long v;
	uint8_t mac[6];
	char e2[256];

	for (k = 0; k < RB_ARRAY_SIZE(keys) && strcmp(keys[k], key); k++)
		;
	if (k == RB_ARRAY_SIZE(keys))
		return rb_errf(err, errlen, "unknown key \"%.40s\"", key);
	if (*seen & (1u << k))
		return rb_errf(err, errlen, "%s given twice", key);
	*seen |= 1u << k;
	switch (k) {
	case 0:
		return agent_server_parse(val, c->server, err, errlen) < 0 ? -EINVAL : 0;
	case 1:
		if (strlen(val) != 17 || rb_mac_parse(val, mac) < 0)
			return rb_errf(err, errlen, "mac: expected aa:bb:cc:dd:ee:ff");
		rb_mac_format(mac, c->mac);
		return 0;
	case 2:
		if (agent_token_check(val, e2, sizeof(e2)) < 0)
			return rb_errf(err, errlen,
			               "token: expected 32 to 64 lowercase hex digits");
		snprintf(c->token, sizeof(c->token), "%s", val);
		return 0;
	case 3:
		if (*val && agent_server_parse(val, c->repo, e2, sizeof(e2)) < 0)
			return rb_errf(err, errlen, "repo: expected an http(s) URL");
		return 0;
	case 8: {
		struct agent_hosts scratch;
		char list[AGENT_URL_MAX + 64], *save = NULL, *tok;

		snprintf(list, sizeof(list), "%s", val);
		agent_hosts_init(&scratch, "http://localhost/", NULL);
		for (tok = strtok_r(list, " \t,", &save); tok;
		     tok = strtok_r(NULL, " \t,", &save)) {
			if (c->n_repo_hosts == AGENT_PLAN_HOSTS_MAX)
				return rb_errf(err, errlen, "repo_hosts: more than %d entries",
				               AGENT_PLAN_HOSTS_MAX);
			if (strlen(tok) >= AGENT_PLAN_HOST_LEN ||
			    agent_hosts_add(&scratch, tok) < 0)
				return rb_errf(err, errlen,
				               "repo_hosts: \"%.80s\": expected host or host:port",
				               tok);
			snprintf(c->repo_hosts[c->n_repo_hosts++], AGENT_PLAN_HOST_LEN, "%s", tok);
		}
		return 0;
	}
	case 4:
	case 5:
		if (*val && !img_name_is_valid(val))
			return rb_errf(err, errlen, "%s: expected [A-Za-z0-9._+-]{1,64}", key);
		snprintf(k == 4 ? c->image : c->image_version, 65, "%s", val);
		return 0;
	default:
		if (rb_strtonum(val, k == 6 ? 5 : 0, 86400, &v) < 0)
			return rb_errf(err, errlen, "%s: expected %s to 86400 seconds", key,
			               k == 6 ? "5" : "0");
		*(k == 6 ? &c->interval_s : &c->jitter_s) = (unsigned)v;
		return 0;
	}
}

int agent_update_conf_parse(const char *text, size_t len, struct agent_update_conf *ret, char *err,
                            size_t errlen)
{
	struct agent_update_conf c = { .interval_s = 300, .jitter_s = 60 };
	unsigned seen = 0, line = 0;
	char e2[300];

	if (len > AGENT_CONF_MAX)
		return rb_errf(err, errlen, "larger than %d bytes", AGENT_CONF_MAX);
	for (size_t i = 0; i < len;) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t ll = nl ? (size_t)(nl - text) - i : len - i, s = 0, eq;
		char buf[AGENT_URL_MAX + 64], *key, *val, *end;

		line++;
		if (ll >= sizeof(buf))
			return rb_errf(err, errlen, "line %u: too long", line);
		memcpy(buf, text + i, ll);
		buf[ll] = '\0';
		i += ll + (nl ? 1 : 0);
		while (buf[s] == ' ' || buf[s] == '\t')
			s++;
		if (!buf[s] || buf[s] == '#')
			continue;
		if (strlen(buf) != ll)
			return rb_errf(err, errlen, "line %u: NUL byte", line);
		eq = strcspn(buf + s, "=");
		if (!buf[s + eq])
			return rb_errf(err, errlen, "line %u: expected key = value", line);
		key = buf + s;
		val = buf + s + eq + 1;
		for (end = buf + s + eq; end > key && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		while (*val == ' ' || *val == '\t')
			val++;
		for (end = val + strlen(val);
		     end > val && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'); end--)
			;
		*end = '\0';
		if (conf_line(&c, key, val, &seen, e2, sizeof(e2)) < 0)
			return rb_errf(err, errlen, "line %u: %s", line, e2);
	}
	if (!c.server[0] || !c.mac[0] || !c.token[0])
		return rb_errf(err, errlen, "%s is missing",
		               !c.server[0] ? "server"
		               : !c.mac[0]  ? "mac"
		                            : "token");
	if (!c.repo[0] &&
	    snprintf(c.repo, sizeof(c.repo), "%.*s/repo", (int)sizeof(c.repo) - 6, c.server) < 0)
		return rb_errf(err, errlen, "repo: cannot be made from server");
	*ret = c;
	return 0;
}

/* ---- the desired state ------------------------------------------------------------------ */

void agent_desired_fini(struct agent_desired *d)
{
	free(d->packages);
	d->packages = NULL;
	d->n_packages = 0;
}

static int json_str(json_t *o, const char *key, char *dst, size_t cap, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v) || json_string_length(v) >= cap ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return rb_errf(err, errlen,
		               "desired: %s: expected a string of at most %zu characters", key,
		               cap - 1);
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

int agent_desired_parse(const char *data, size_t len, struct agent_desired *ret, char *err,
                        size_t errlen)
{
	struct agent_desired d = { 0 };
	json_t *root = NULL, *img, *pk, *v;
	size_t i;
	int e;

	e = img_json_load(data, len, DESIRED_MAX, "desired", &root, err, errlen);
	if (e < 0)
		return e;
	e = -EINVAL;
	img = json_object_get(root, "image");
	pk = json_object_get(root, "packages");
	if (!json_is_object(root) || !json_is_boolean(json_object_get(root, "hold")) ||
	    !json_is_boolean(json_object_get(root, "reimage")) || !json_is_object(img) ||
	    !json_is_array(pk)) {
		rb_errf(err, errlen,
		        "desired: expected {generation, hold, image {name, version}, packages, "
		        "reimage}");
		goto out;
	}
	d.hold = json_is_true(json_object_get(root, "hold"));
	d.reimage = json_is_true(json_object_get(root, "reimage"));
	if (json_str(root, "generation", d.generation, sizeof(d.generation), err, errlen) < 0 ||
	    json_str(img, "name", d.image, sizeof(d.image), err, errlen) < 0 ||
	    json_str(img, "version", d.image_version, sizeof(d.image_version), err, errlen) < 0)
		goto out;
	if (!img_name_is_valid(d.image) || !img_name_is_valid(d.image_version)) {
		rb_errf(err, errlen, "desired: image: not a name and version");
		goto out;
	}
	if (json_array_size(pk) > AGENT_PLAN_PKGS_MAX) {
		rb_errf(err, errlen, "desired: more than %u packages", AGENT_PLAN_PKGS_MAX);
		goto out;
	}
	d.packages = calloc(json_array_size(pk) + 1, sizeof(*d.packages));
	if (!d.packages) {
		e = -ENOMEM;
		goto out;
	}
	json_array_foreach(pk, i, v)
	{
		struct agent_plan_pkg *p = &d.packages[i];

		if (!json_is_object(v) ||
		    json_str(v, "name", p->name, sizeof(p->name), err, errlen) < 0 ||
		    json_str(v, "version", p->version, sizeof(p->version), err, errlen) < 0 ||
		    !img_name_is_valid(p->name) || !img_pkg_version_is_valid(p->version)) {
			rb_errf(err, errlen, "desired: packages[%zu]: expected {name, version}", i);
			goto out;
		}
		d.n_packages = i + 1;
	}
	e = 0;
	*ret = d;
	d.packages = NULL;
out:
	agent_desired_fini(&d);
	json_decref(root);
	return e;
}

int agent_efi_netboot_entry(const char *listing, char ret[5])
{
	static const char *const words[] = { "pxe", "network", "ipv4", "ipv6", "http" };

	for (const char *l = listing; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		size_t ll = strcspn(l, "\n");
		char desc[256];

		if (ll < 10 || strncmp(l, "Boot", 4) != 0 || (l[8] != '*' && l[8] != ' '))
			continue;
		if (!isxdigit((unsigned char)l[4]) || !isxdigit((unsigned char)l[5]) ||
		    !isxdigit((unsigned char)l[6]) || !isxdigit((unsigned char)l[7]))
			continue;
		snprintf(desc, sizeof(desc), "%.*s", (int)RB_MIN(ll - 9, sizeof(desc) - 1), l + 9);
		for (size_t w = 0; w < RB_ARRAY_SIZE(words); w++)
			if (strcasestr(desc, words[w])) {
				memcpy(ret, l + 4, 4);
				ret[4] = '\0';
				return 0;
			}
	}
	return -ENOENT;
}

/* ---- the loop --------------------------------------------------------------------------- */

struct upd {
	const char *root; /* "/" on a node; a directory in tests */
	const char *conf_path, *pubdir, *arch, *efibootmgr, *efivars;
	bool once, no_after;
	unsigned interval_s, jitter_s, timeout_s, script_timeout_s;
	struct agent_update_conf conf;
	struct agent_api api;
	struct rb_key *keys[MAX_KEYS];
	size_t n_keys;
	char arch_buf[65];
	int rootfd;
	char etag[64], result[16]; /* the generation acted on, and how it went */
};

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static int read_small_file(int dirfd, const char *path, size_t max, char **ret, size_t *ret_len)
{
	int fd = dirfd >= 0 ? rb_open_beneath(dirfd, path, O_RDONLY | O_CLOEXEC)
	                    : open(path, O_RDONLY | O_CLOEXEC);
	char *buf;
	ssize_t k;
	size_t n = 0;

	if (fd < 0)
		return dirfd >= 0 ? fd : -errno;
	buf = malloc(max + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (n <= max && (k = read(fd, buf + n, max + 1 - n)) > 0)
		n += (size_t)k;
	close(fd);
	if (n > max) {
		free(buf);
		return -EFBIG;
	}
	buf[n] = '\0';
	*ret = buf;
	*ret_len = n;
	return 0;
}

static void load_state(struct upd *u)
{
	char *text = NULL, *sp;
	size_t len;

	u->etag[0] = u->result[0] = '\0';
	if (read_small_file(u->rootfd, STATE_FILE, 256, &text, &len) < 0)
		return;
	text[strcspn(text, "\n")] = '\0';
	sp = strchr(text, ' ');
	if (sp && (size_t)(sp - text) < sizeof(u->etag)) {
		*sp = '\0';
		snprintf(u->etag, sizeof(u->etag), "%s", text);
		snprintf(u->result, sizeof(u->result), "%.15s", sp + 1);
	}
	free(text);
}

static void save_state(struct upd *u, const char *etag, const char *result)
{
	char line[128], err[256];

	snprintf(u->etag, sizeof(u->etag), "%s", etag);
	snprintf(u->result, sizeof(u->result), "%s", result);
	snprintf(line, sizeof(line), "%s %s\n", u->etag, u->result);
	if (agent_write_beneath(u->rootfd, STATE_FILE, line, strlen(line), 0644, err, sizeof(err)) <
	    0)
		log_warn("%s", err);
}

static bool reboot_flag(struct upd *u, bool set)
{
	struct stat st;

	if (set) {
		char err[256];
		static const char msg[] = "a kernel, initramfs or driver package changed\n";

		if (agent_write_beneath(u->rootfd, REBOOT_FLAG, msg, strlen(msg), 0644, err,
		                        sizeof(err)) < 0)
			log_warn("%s", err);
	}
	return fstatat(u->rootfd, REBOOT_FLAG, &st, 0) == 0;
}

/* Posts state with the installed image and packages, best effort. */
static void report(struct upd *u, const char *state, const char *step, const char *message)
{
	json_t *pkgs = NULL, *extra;
	char err[768];

	if (agent_pkg_state_list(u->rootfd, &pkgs, err, sizeof(err)) < 0) {
		log_warn("installed.json: %s", err);
		pkgs = json_array();
	}
	extra = json_pack("{s:{s:{s:s, s:s}, s:o}, s:b}", "installed", "image", "name",
	                  u->conf.image[0] ? u->conf.image : "unknown", "version",
	                  u->conf.image_version[0] ? u->conf.image_version : "unknown", "packages",
	                  pkgs ? pkgs : json_array(), "reboot_required", reboot_flag(u, false));
	if (!u->conf.image[0] || !u->conf.image_version[0])
		json_object_del(json_object_get(extra, "installed"), "image");
	if (agent_post_status_ex(&u->api, state, step, message, NULL, extra, 2, err, sizeof(err)) <
	    0)
		log_warn("reporting %s: %s", state, err);
	else
		log_info("state %s%s%s", state, message ? ": " : "", message ? message : "");
	json_decref(extra);
}

/* Runs argv (no shell) and keeps its stdout (at most CAPTURE_MAX). */
static int run_capture(const char *const argv[], char **ret)
{
	posix_spawn_file_actions_t fa;
	int pipefd[2], status = 0, e;
	char *buf = malloc(CAPTURE_MAX + 1);
	size_t n = 0;
	ssize_t k;
	pid_t pid;

	if (!buf || pipe2(pipefd, O_CLOEXEC) < 0) {
		free(buf);
		return -errno ?: -ENOMEM;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	e = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (e) {
		close(pipefd[0]);
		free(buf);
		return -e;
	}
	while ((k = read(pipefd[0], buf + n, CAPTURE_MAX - n)) > 0 && n < CAPTURE_MAX)
		n += (size_t)k;
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	buf[n] = '\0';
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		free(buf);
		return -ECHILD;
	}
	*ret = buf;
	return 0;
}

/* The next boot from the network with efibootmgr (--efibootmgr PATH
 * only: the native way below reads the same variables and chooses by the
 * node's MAC, where efibootmgr's listing offers only descriptions). */
static void arrange_netboot_tool(const char *tool, char *how, size_t howlen)
{
	char *listing = NULL, entry[5];
	int e;

	{
		const char *argv[] = { tool, NULL };

		e = run_capture(argv, &listing);
	}
	if (e == 0)
		e = agent_efi_netboot_entry(listing, entry);
	free(listing);
	if (e == 0) {
		const char *argv[] = { tool, "-q", "-n", entry, NULL };
		char *out = NULL;

		e = run_capture(argv, &out);
		free(out);
	}
	if (e < 0)
		snprintf(how, howlen,
		         "%s found no network boot entry or failed (%s): the next boot reaches "
		         "rackbootd only if the firmware tries the network before the disk",
		         tool,
		         e == -ENOENT ? "none is named PXE, Network, IPv4/6 or HTTP"
		                      : strerror(-e));
	else
		snprintf(how, howlen, "BootNext set to Boot%s (%s -n)", entry, tool);
}

/* The next boot from the network: BootNext through efivarfs on UEFI
 * (agent/efivars.c), nothing on BIOS (rackbootd serves the provisioning
 * boot once the node reported "reimage", if the firmware tries the
 * network first). how says which, and why. A test root (--root other
 * than /) leaves this machine's firmware alone unless --efivars names a
 * directory. */
static void arrange_netboot(struct upd *u, char *how, size_t howlen)
{
	char msg[1024];
	uint8_t mac[6];
	int e;

	if (u->efibootmgr) {
		arrange_netboot_tool(u->efibootmgr, how, howlen);
		return;
	}
	if (!u->efivars && strcmp(u->root, "/") != 0) {
		snprintf(how, howlen,
		         "not set (--root %s is not this machine's root, and no --efivars): the "
		         "firmware's boot order decides",
		         u->root);
		return;
	}
	if (rb_mac_parse(u->conf.mac, mac) < 0) {
		snprintf(how, howlen, "not set (mac \"%s\" in agent.conf unreadable)", u->conf.mac);
		return;
	}
	e = agent_efi_netboot_next(u->efivars, mac, false, msg, sizeof(msg));
	if (e < 0 && e != -EOPNOTSUPP)
		log_warn("next boot: BootNext not set: %s", msg);
	else
		log_info("next boot: %s", msg);
	/* the report carries it cut to fit (the log above has it whole) */
	if ((e == 0 || e == -EOPNOTSUPP
	             ? snprintf(how, howlen, "%s", msg)
	             : snprintf(how, howlen,
	                        "BootNext not set: %s; the next boot reaches rackbootd only if "
	                        "the firmware tries the network before the disk",
	                        msg)) >= (int)howlen)
		log_debug("next boot: cut to %zu bytes for the report", howlen - 1);
}

static int do_reimage(struct upd *u, const struct agent_desired *d, const char *etag)
{
	/* rackbootd refuses a status message over 1024 bytes (pxe/api.c
	 * API_MESSAGE_MAX): cut here, so the reimage is still reported */
	char how[720], msg[1024 + 1];

	arrange_netboot(u, how, sizeof(how));
	if (snprintf(msg, sizeof(msg), "reimage to %s %s (running %s %s); next boot: %s", d->image,
	             d->image_version, u->conf.image[0] ? u->conf.image : "?",
	             u->conf.image_version[0] ? u->conf.image_version : "?",
	             how) >= (int)sizeof(msg))
		log_debug("reimage: the status message cut to %zu bytes", sizeof(msg) - 1);
	report(u, "reimage", "reimage", msg);
	/* Acted on: a node whose firmware boots its disk again does not loop. */
	save_state(u, etag, "reimage");
	if (u->no_after) {
		log_info("not rebooting (--no-after)");
		return 0;
	}
	sync();
	if (reboot(RB_AUTOBOOT) < 0) {
		log_error("reboot: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int load_keys(struct upd *u, char *err, size_t errlen)
{
	struct dirent **list = NULL;
	const char *paths[MAX_KEYS];
	char *owned[MAX_KEYS];
	size_t np = 0;
	int n, e;

	if (u->n_keys)
		return 0;
	n = scandir(u->pubdir, &list, NULL, alphasort);
	if (n < 0)
		return agent_errf(err, errlen, -errno, "trusted keys: %s: %s", u->pubdir,
		                  strerror(errno));
	for (int i = 0; i < n; i++) {
		size_t l = strlen(list[i]->d_name);

		if (np < MAX_KEYS && list[i]->d_name[0] != '.' && l > 4 &&
		    !strcmp(list[i]->d_name + l - 4, ".pub") &&
		    asprintf(&owned[np], "%s/%s", u->pubdir, list[i]->d_name) >= 0) {
			paths[np] = owned[np];
			np++;
		}
		free(list[i]);
	}
	free(list);
	if (!np)
		return agent_errf(err, errlen, -ENOENT, "trusted keys: no *.pub in %s", u->pubdir);
	e = rb_keys_load_public(paths, np, u->keys, err, errlen);
	if (e == 0)
		u->n_keys = np;
	for (size_t i = 0; i < np; i++)
		free(owned[i]);
	return e;
}

/* One line naming the changes: "lib 1.0 -> 1.1, +app 2.0, -old 3". */
static void describe(const struct agent_sync_result *r, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < r->n && o + 1 < len; i++) {
		const struct agent_pkg_change *c = &r->changes[i];

		if (!c->from[0])
			o += (size_t)snprintf(buf + o, len - o, "%s+%s %s", i ? ", " : "", c->name,
			                      c->to);
		else if (!c->to[0])
			o += (size_t)snprintf(buf + o, len - o, "%s-%s %s", i ? ", " : "", c->name,
			                      c->from);
		else
			o += (size_t)snprintf(buf + o, len - o, "%s%s %s -> %s", i ? ", " : "",
			                      c->name, c->from, c->to);
	}
}

static int apply(struct upd *u, const struct agent_desired *d, const char *etag)
{
	struct agent_pkg_opts po = { .repo = u->conf.repo,
		                     .root = u->root,
		                     .arch = u->arch,
		                     .script_timeout_s = u->script_timeout_s,
		                     .timeout_s = u->timeout_s };
	struct agent_sync_result res = { 0 };
	struct agent_hosts hosts;
	struct img_catalog *cat = NULL;
	char **wanted = calloc(d->n_packages + 1, sizeof(char *));
	char err[4096], what[1024], msg[5200];
	int e;

	if (!wanted)
		return -ENOMEM;
	for (size_t i = 0; i < d->n_packages; i++)
		if (asprintf(&wanted[i], "%s=%s", d->packages[i].name, d->packages[i].version) <
		    0) {
			wanted[i] = NULL;
			e = -ENOMEM;
			goto out;
		}
	e = load_keys(u, err, sizeof(err));
	if (e == 0) {
		const char *allow[AGENT_PLAN_HOSTS_MAX];

		for (size_t i = 0; i < u->conf.n_repo_hosts; i++)
			allow[i] = u->conf.repo_hosts[i];
		e = agent_hosts_build(&hosts, u->conf.repo, allow, u->conf.n_repo_hosts,
		                      AGENT_HOSTS_HINT_CONF, err, sizeof(err));
		po.hosts = &hosts;
	}
	if (e == 0) {
		po.pubs = (const struct rb_key *const *)u->keys;
		po.n_pubs = u->n_keys;
		e = agent_pkg_fetch_catalog(&po, &cat, err, sizeof(err));
	}
	if (e == 0)
		e = agent_pkg_sync_plan(&po, cat, (const char *const *)wanted, d->n_packages, &res,
		                        err, sizeof(err));
	if (e < 0)
		goto failed;
	if (res.n == 0) {
		log_info("packages as desired (%zu)", d->n_packages);
		report(u, "ready", "up to date", NULL);
		save_state(u, etag, "ok");
		goto out;
	}
	describe(&res, what, sizeof(what));
	report(u, "updating", what, NULL);
	agent_sync_result_fini(&res);
	e = agent_pkg_sync(&po, cat, (const char *const *)wanted, d->n_packages, &res, err,
	                   sizeof(err));
	if (res.reboot_required)
		reboot_flag(u, true);
	if (e < 0)
		goto failed;
	report(u, "ready", what, what);
	save_state(u, etag, "ok");
	goto out;
failed:
	snprintf(msg, sizeof(msg), "update: %s (that package was rolled back)", err);
	log_error("%s", msg);
	report(u, "failed", "update", msg);
	save_state(u, etag, "failed");
out:
	agent_sync_result_fini(&res);
	img_catalog_free(cat);
	for (size_t i = 0; i < d->n_packages; i++)
		free(wanted[i]);
	free(wanted);
	return e;
}

static int poll_once(struct upd *u)
{
	struct agent_desired d = { 0 };
	char etag[64], err[768], *body = NULL;
	size_t len = 0;
	bool nm = false;
	int e;

	e = agent_api_get_cond(&u->api, "/desired", u->etag, 2, &nm, etag, &body, &len, err,
	                       sizeof(err));
	if (e < 0) {
		log_warn("desired state: %s", err);
		return e;
	}
	if (nm) {
		log_debug("desired state unchanged (%s)", u->etag);
		return 0;
	}
	e = agent_desired_parse(body, len, &d, err, sizeof(err));
	free(body);
	if (e < 0) {
		log_error("%s", err);
		return e;
	}
	if (!etag[0]) /* a server that sends none: the generation itself */
		snprintf(etag, sizeof(etag), "\"%.60s\"", d.generation);
	if (d.hold) {
		log_info("held by an operator: nothing changes");
		save_state(u, etag, "held");
	} else if (d.reimage) {
		e = do_reimage(u, &d, etag);
	} else {
		e = apply(u, &d, etag);
	}
	agent_desired_fini(&d);
	return e;
}

static void sleep_s(unsigned s)
{
	struct timespec ts = { .tv_sec = s };

	while (!stopping && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static unsigned jitter(unsigned max)
{
	uint32_t r = 0;

	if (!max || getrandom(&r, sizeof(r), 0) != sizeof(r))
		return 0;
	return r % (max + 1);
}

static int run_update(struct upd *u)
{
	char path[PATH_MAX], err[512], *text = NULL, pubdir[PATH_MAX];
	struct sigaction sa = { .sa_handler = on_signal };
	struct utsname un;
	size_t len;
	int e, rc = 1;

	u->rootfd = open(u->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (u->rootfd < 0) {
		fprintf(stderr, "rackboot-agent update: %s: %s\n", u->root, strerror(errno));
		return 1;
	}
	if (!u->conf_path) {
		snprintf(path, sizeof(path), "%s%s", strcmp(u->root, "/") ? u->root : "",
		         AGENT_CONF_PATH);
		u->conf_path = path;
	}
	if (!u->pubdir) {
		snprintf(pubdir, sizeof(pubdir), "%s/etc/rackboot/trusted",
		         strcmp(u->root, "/") ? u->root : "");
		u->pubdir = pubdir;
	}
	e = read_small_file(-1, u->conf_path, AGENT_CONF_MAX, &text, &len);
	if (e == 0)
		e = agent_update_conf_parse(text, len, &u->conf, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "%s", strerror(-e));
	free(text);
	if (e < 0) {
		fprintf(stderr, "rackboot-agent update: %s: %s\n", u->conf_path, err);
		goto out;
	}
	if (!u->interval_s)
		u->interval_s = u->conf.interval_s;
	if (u->jitter_s == UINT32_MAX)
		u->jitter_s = u->conf.jitter_s;
	if (!u->arch) {
		if (uname(&un) < 0)
			goto out;
		snprintf(u->arch_buf, sizeof(u->arch_buf), "%s",
		         agent_pkg_arch_of_machine(un.machine));
		u->arch = u->arch_buf;
	}
	if (agent_api_init(&u->api, u->conf.server, u->conf.mac, u->conf.token, u->timeout_s) < 0)
		goto out;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	load_state(u);
	log_info("node %s, server %s, every %u s + up to %u s%s", u->conf.mac, u->conf.server,
	         u->interval_s, u->jitter_s, u->once ? " (once)" : "");
	for (;;) {
		e = poll_once(u);
		if (u->once || stopping)
			break;
		sleep_s(u->interval_s + jitter(u->jitter_s));
		if (stopping)
			break;
	}
	rc = u->once && e < 0 ? 1 : 0;
out:
	agent_api_fini(&u->api);
	for (size_t k = 0; k < u->n_keys; k++)
		rb_key_free(u->keys[k]);
	close(u->rootfd);
	return rc;
}

/* `rackboot-agent netboot-next`: what update does before a reimage, on
 * its own, so an operator can see (--dry-run) or set the entry. */
int agent_cmd_netboot_next(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "mac", required_argument, NULL, 'm' },
		{ "efivars", required_argument, NULL, 'V' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *conf_path = AGENT_CONF_PATH, *mac_text = NULL, *dir = NULL;
	struct agent_update_conf conf;
	char msg[1024], err[512], *text = NULL;
	bool dry_run = false;
	uint8_t mac[6];
	size_t len;
	int c, e;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			conf_path = optarg;
			break;
		case 'm':
			mac_text = optarg;
			break;
		case 'V':
			dir = optarg;
			break;
		case 'n':
			dry_run = true;
			break;
		case 'h':
			printf("usage: rackboot-agent netboot-next [--mac MAC | --config FILE]\n"
			       "                                   [--efivars DIR] [--dry-run]\n"
			       "Sets UEFI BootNext to the firmware's network entry for MAC "
			       "(default:\n"
			       "agent.conf's), as update does before a reimage.\n"
			       "  --efivars DIR  an efivarfs directory (default " AGENT_EFIVARS_DIR
			       ",\n                 mounted if need be)\n"
			       "  --dry-run      say which entry, write nothing\n"
			       "Exit: 0 set (or chosen), 1 not, 2 usage, 3 BIOS.\n");
			return 0;
		default:
			goto bad;
		}
	}
	if (optind != argc)
		goto bad;
	if (!mac_text) {
		e = read_small_file(-1, conf_path, AGENT_CONF_MAX, &text, &len);
		if (e == 0)
			e = agent_update_conf_parse(text, len, &conf, err, sizeof(err));
		else
			snprintf(err, sizeof(err), "%s", strerror(-e));
		free(text);
		if (e < 0) {
			fprintf(stderr, "rackboot-agent netboot-next: %s: %s (or give --mac)\n",
			        conf_path, err);
			return 1;
		}
		mac_text = conf.mac;
	}
	if (rb_mac_parse(mac_text, mac) < 0)
		goto bad;
	e = agent_efi_netboot_next(dir, mac, dry_run, msg, sizeof(msg));
	printf("%s\n", msg);
	return e == 0 ? 0 : e == -EOPNOTSUPP ? 3 : 1;
bad:
	fputs("usage: rackboot-agent netboot-next [--mac MAC | --config FILE] [--efivars DIR] "
	      "[--dry-run]\n",
	      stderr);
	return 2;
}

static void usage(FILE *f)
{
	fputs("usage: rackboot-agent update [--config FILE] [--root DIR] [--pubdir DIR]\n"
	      "                             [--once] [--interval-s N] [--jitter-s N]\n"
	      "                             [--no-after] [--arch A] [--efivars DIR]\n"
	      "                             [--efibootmgr PATH]\n"
	      "                             [--timeout-s N] [--script-timeout-s N]\n"
	      "Keeps this node at the desired state rackbootd names: polls\n"
	      "/api/v1/nodes/<mac>/desired (conditional GET), applies package changes\n"
	      "transactionally, reports installed versions, reimages when asked.\n"
	      "  --config FILE  agent config (default ROOT" AGENT_CONF_PATH ")\n"
	      "  --root DIR     the root whose packages are managed (default /)\n"
	      "  --pubdir DIR   trusted keys (default ROOT/etc/rackboot/trusted)\n"
	      "  --once         poll and apply once, then exit (1 if that failed)\n"
	      "  --interval-s N, --jitter-s N  override the config (poll every N s + 0..J s)\n"
	      "  --no-after     report a reimage but do not reboot\n"
	      "  --efivars DIR  set BootNext for a reimage in DIR, an efivarfs (default:\n"
	      "                 " AGENT_EFIVARS_DIR ", mounted if need be, on UEFI)\n"
	      "  --efibootmgr PATH  set BootNext with this tool instead\n"
	      "Exit: 0 (after SIGTERM, or --once done), 1 failure, 2 usage.\n",
	      f);
}

int agent_cmd_update(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "root", required_argument, NULL, 'r' },
		{ "pubdir", required_argument, NULL, 'p' },
		{ "once", no_argument, NULL, '1' },
		{ "interval-s", required_argument, NULL, 'i' },
		{ "jitter-s", required_argument, NULL, 'j' },
		{ "no-after", no_argument, NULL, 'n' },
		{ "arch", required_argument, NULL, 'a' },
		{ "efibootmgr", required_argument, NULL, 'E' },
		{ "efivars", required_argument, NULL, 'V' },
		{ "timeout-s", required_argument, NULL, 'T' },
		{ "script-timeout-s", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct upd *u = calloc(1, sizeof(*u));
	long long v;
	int c, rc;

	if (!u)
		return 1;
	u->root = "/";
	u->timeout_s = 30;
	u->jitter_s = UINT32_MAX;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			u->conf_path = optarg;
			break;
		case 'r':
			u->root = optarg;
			break;
		case 'p':
			u->pubdir = optarg;
			break;
		case '1':
			u->once = true;
			break;
		case 'n':
			u->no_after = true;
			break;
		case 'a':
			if (!img_name_is_valid(optarg) || strlen(optarg) > 32)
				goto bad;
			u->arch = optarg;
			break;
		case 'E':
			u->efibootmgr = optarg;
			break;
		case 'V':
			u->efivars = optarg;
			break;
		case 'i':
		case 'j':
		case 'T':
		case 'S':
			if (rb_strtonum(optarg, c == 'j' ? 0 : 1, 86400, &v) < 0)
				goto bad;
			*(c == 'i'   ? &u->interval_s
			  : c == 'j' ? &u->jitter_s
			  : c == 'T' ? &u->timeout_s
			             : &u->script_timeout_s) = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			free(u);
			return 0;
		default:
			goto bad;
		}
	}
	if (optind != argc)
		goto bad;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(u);
		return 1;
	}
	rc = run_update(u);
	curl_global_cleanup();
	free(u);
	return rc;
bad:
	usage(stderr);
	free(u);
	return 2;
}
