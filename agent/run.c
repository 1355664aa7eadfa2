/* run: the agent's job on a booting node, from the kernel command line to
 * a written disk (or a reported inventory) and the reboot.
 *
 * Flow (the stage-1 protocol contract):
 *   1. rackboot.server/mac/token(/mode) from /proc/cmdline (plan.c parses
 *      it), each overridable by a flag for tests and operators.
 *   2. GET <server>/api/v1/nodes/<mac>/plan (report.c: bearer token,
 *      bounded retries with backoff for network errors and 5xx, no
 *      redirects). Other answers (403 wrong token, 404, 409 no profile) end
 *      the run at once with the server's error message.
 *   3. POST the inventory (inventory.c). Its failure ends a discovery run
 *      (the inventory is what it is for) and is a warning when imaging.
 *   4. action "image": the signed manifest (type rackboot) or the signed
 *      catalogue entry (plain and rootfs, written by plain.c) is fetched
 *      and verified first (nothing is wiped for an image that would be
 *      refused anyway) and gives the disk size the auto-picked disk must
 *      hold; a disk below /dev must exist and be large enough. Then status
 *      "wiping" and the wipe (wipe.c), status "imaging" and the write
 *      (writer.c or plain.c) with a progress report about once a second
 *      (report.c's thread), the grow of the last partition (grow.c) if
 *      asked, status "imaged" with a one-line account.
 *   5. Stage 2 when the plan has one (agent/stage2.c): status "installing"
 *      with a step per package, the root partition mounted, the plan's
 *      packages installed with their dependencies, the post-install
 *      settings and the installed agent written, unmounted; then "imaged"
 *      carries what is installed ("installed": image and packages).
 *   6. The after action: sync, then reboot(2) or power off. --no-after skips
 *      it for tests. "kexec" loads the installed system's kernel
 *      (agent/kexec.c), reports step "kexec" and reboots into it; where it
 *      cannot, it reports why and reboots through the firmware.
 * Any failure posts status "failed" with a one-line reason (best effort:
 * the server may be what failed) and exits 1. As PID 1 (an initramfs that
 * exec's the agent) a failure waits a while and reboots, so a node never
 * hangs or panics the kernel by init exiting.
 *
 * Owns the API connection and the loaded keys. Never writes to a disk
 * before the image verified, never to a disk the plan or --target did not
 * name except the one agent_pick_disk() chose, never prints the token. */
#include "agent/run.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/fetch.h"
#include "agent/grow.h"
#include "agent/inventory.h"
#include "agent/kexec.h"
#include "agent/plain.h"
#include "agent/plan.h"
#include "agent/report.h"
#include "agent/stage2.h"
#include "agent/wipe.h"
#include "agent/writer.h"
#include "common/catalog.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/sign.h"
#include "common/util.h"

#define DEFAULT_PUBDIR  "/etc/rackboot/trusted"
#define MAX_KEYS        16
#define REASON_MAX      1024
#define PID1_FAIL_DELAY 30 /* seconds before an init agent reboots after a failure */
#define SIG_MAX         4096

/* ---- disks and keys ------------------------------------------------------------------ */

static bool disk_skipped(const char *n)
{
	static const char *const prefixes[] = { "loop", "ram", "zram", "sr", "fd", "nbd" };

	for (size_t i = 0; i < RB_ARRAY_SIZE(prefixes); i++)
		if (!strncmp(n, prefixes[i], strlen(prefixes[i])))
			return true;
	return (!strncmp(n, "md", 2) && n[2] >= '0' && n[2] <= '9') ||
	       (!strncmp(n, "dm-", 3) && n[3] >= '0' && n[3] <= '9');
}

/* A small decimal attribute of sysroot/sys/block/<name>/<attr>. */
static int block_attr(int dirfd, const char *name, const char *attr, long long max, long long *ret)
{
	char path[320], buf[64];
	ssize_t n;
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", name, attr) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	return rb_strtonum(buf, 0, max, ret);
}

static void append(char *buf, size_t len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t len, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	if (n + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
}

int agent_pick_disk(const char *sysroot, uint64_t min_size, char *ret, size_t retlen, char *err,
                    size_t errlen)
{
	char dir[PATH_MAX], best[NAME_MAX + 1] = "", seen[512] = "";
	uint64_t best_size = 0;
	struct dirent *de;
	DIR *d;
	int dfd;

	snprintf(dir, sizeof(dir), "%s/sys/block", strcmp(sysroot, "/") ? sysroot : "");
	d = opendir(dir);
	if (!d) {
		int e = -errno;

		snprintf(err, errlen, "%s: %s", dir, strerror(-e));
		return e;
	}
	dfd = dirfd(d);
	while ((de = readdir(d))) {
		long long sectors, removable, ro;
		uint64_t size;
		const char *why = NULL;

		if (de->d_name[0] == '.' || disk_skipped(de->d_name))
			continue;
		if (block_attr(dfd, de->d_name, "size", INT64_MAX / 512, &sectors) < 0) {
			continue;
		}
		size = (uint64_t)sectors * 512;
		if (block_attr(dfd, de->d_name, "removable", 1, &removable) < 0 || removable)
			why = "removable";
		else if (block_attr(dfd, de->d_name, "ro", 1, &ro) < 0 || ro)
			why = "read-only";
		else if (size < min_size)
			why = "too small";
		append(seen, sizeof(seen), "%s%s %llu bytes%s%s", seen[0] ? ", " : "", de->d_name,
		       (unsigned long long)size, why ? " " : "", why ? why : "");
		if (why)
			continue;
		if (!best[0] || size < best_size ||
		    (size == best_size && strverscmp(de->d_name, best) < 0)) {
			snprintf(best, sizeof(best), "%s", de->d_name);
			best_size = size;
		}
	}
	closedir(d);
	if (!best[0]) {
		snprintf(err, errlen,
		         "no non-removable, writable disk of at least %llu bytes (seen: %s)",
		         (unsigned long long)min_size, seen[0] ? seen : "none");
		return -ENODEV;
	}
	/* sysfs writes '/' in a device name as '!' (cciss!c0d0). */
	for (char *p = best; *p; p++)
		if (*p == '!')
			*p = '/';
	if (snprintf(ret, retlen, "/dev/%s", best) >= (int)retlen)
		return -ENAMETOOLONG;
	return 0;
}

static int pub_filter(const struct dirent *de)
{
	size_t n = strlen(de->d_name);

	return de->d_name[0] != '.' && n > 4 && !strcmp(de->d_name + n - 4, ".pub");
}

static int load_keys(const char *dir, struct rb_key **keys, size_t *ret_n, char *err, size_t errlen)
{
	struct dirent **list = NULL;
	size_t nk = 0;
	int n, e = 0;

	n = scandir(dir, &list, pub_filter, alphasort);
	if (n < 0) {
		e = -errno;
		snprintf(err, errlen, "trusted keys: %s: %s", dir, strerror(-e));
		return e;
	}
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX];

		if (e == 0 && nk == MAX_KEYS) {
			snprintf(err, errlen, "trusted keys: more than %d in %s", MAX_KEYS, dir);
			e = -E2BIG;
		}
		if (e == 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, list[i]->d_name);
			e = rb_key_load_public(path, &keys[nk]);
			if (e < 0)
				rb_errf(err, errlen, "trusted key %s: %s", path, strerror(-e));
			else
				nk++;
		}
		free(list[i]);
	}
	free(list);
	if (e == 0 && nk == 0) {
		snprintf(err, errlen, "trusted keys: no *.pub file in %s", dir);
		e = -ENOENT;
	}
	if (e < 0) {
		for (size_t k = 0; k < nk; k++)
			rb_key_free(keys[k]);
		return e;
	}
	*ret_n = nk;
	return 0;
}

/* ---- the run ------------------------------------------------------------------------ */

struct run {
	const struct agent_run_opts *o;
	struct agent_cmdline c;
	struct agent_plan plan;
	bool have_plan;
	struct agent_hosts hosts; /* the repository's and the plan's repo_hosts */
	struct agent_api api;
	struct rb_key *keys[MAX_KEYS];
	size_t n_keys;
	char target[PATH_MAX];
	char reason[REASON_MAX];
	char summary[REASON_MAX];
	struct agent_progress written; /* the image's final progress, for "imaged" */
	json_t *installed;             /* stage 2's packages, for "imaged" */
};

static int fail(struct run *r, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct run *r, int e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
	return e;
}

static int read_cmdline(struct run *r)
{
	const char *path = r->o->cmdline_path ? r->o->cmdline_path : "/proc/cmdline";
	char *buf = malloc(AGENT_CMDLINE_MAX + 1), err[512];
	ssize_t n = 0, k;
	int fd, e;

	if (!buf)
		return fail(r, -ENOMEM, "out of memory");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		e = -errno;
		free(buf);
		return fail(r, e, "%s: %s", path, strerror(-e));
	}
	while (n <= AGENT_CMDLINE_MAX &&
	       (k = read(fd, buf + n, (size_t)(AGENT_CMDLINE_MAX + 1 - n))) > 0)
		n += k;
	close(fd);
	e = agent_cmdline_parse(buf, (size_t)n, &r->c, err, sizeof(err));
	free(buf);
	if (e < 0) /* not a usage error: what the boot loader passed is wrong */
		return fail(r, -EBADMSG, "%s: %s", path, err);
	return 0;
}

/* Command line, then the flags on top, then the check. */
static int identity(struct run *r)
{
	const struct agent_run_opts *o = r->o;
	char err[512];
	uint8_t mac[6];
	int e;

	if ((e = read_cmdline(r)) < 0)
		return e;
	if (o->server && agent_server_parse(o->server, r->c.server, err, sizeof(err)) < 0)
		return fail(r, -EINVAL, "--server: %s", err);
	if (o->mac) {
		if (strlen(o->mac) != 17 || rb_mac_parse(o->mac, mac) < 0)
			return fail(r, -EINVAL,
			            "--mac: expected a MAC address like 52:54:00:12:34:56");
		rb_mac_format(mac, r->c.mac);
	}
	if (o->token) {
		if (agent_token_check(o->token, err, sizeof(err)) < 0)
			return fail(r, -EINVAL, "--token: %s", err);
		snprintf(r->c.token, sizeof(r->c.token), "%s", o->token);
	}
	if (o->mode && agent_mode_parse(o->mode, &r->c.mode) < 0)
		return fail(r, -EINVAL, "--mode: expected provision or discovery");
	if (agent_cmdline_check(&r->c, err, sizeof(err)) < 0)
		return fail(r, -EINVAL, "%s", err);
	return 0;
}

static int get_plan(struct run *r)
{
	char *body = NULL, err[768];
	size_t len;
	int e;

	e = agent_api_call(&r->api, "/plan", NULL, r->o->retries, &body, &len, err, sizeof(err));
	if (e < 0)
		return fail(r, e, "getting the plan: %s", err);
	e = agent_plan_parse(body, len, r->c.mac, &r->plan, err, sizeof(err));
	free(body);
	if (e < 0)
		return fail(r, e, "%s", err);
	r->have_plan = true;
	if (r->plan.has_image) {
		const char *allow[AGENT_PLAN_HOSTS_MAX];

		for (size_t i = 0; i < r->plan.image.n_repo_hosts; i++)
			allow[i] = r->plan.image.repo_hosts[i];
		e = agent_hosts_build(&r->hosts, r->plan.image.repo, allow,
		                      r->plan.image.n_repo_hosts, AGENT_HOSTS_HINT_PLAN, err,
		                      sizeof(err));
		if (e < 0)
			return fail(r, e, "plan: image: %s", err);
	}
	if (r->c.mode != AGENT_MODE_UNSET && r->c.mode != r->plan.mode)
		log_warn("booted for %s, the server's plan is %s: following the plan",
		         agent_mode_name(r->c.mode), agent_mode_name(r->plan.mode));
	log_info("plan: action %s, %s%s%s%s, wipe %s, grow %s, after %s",
	         r->plan.action == AGENT_ACTION_IMAGE ? "image" : "inventory",
	         r->plan.has_image ? r->plan.image.name : "no image", r->plan.has_image ? " " : "",
	         r->plan.has_image ? r->plan.image.version : "",
	         r->plan.disk[0] ? "" : (r->plan.has_image ? ", disk auto" : ""),
	         agent_wipe_mode_name(r->plan.wipe), r->plan.grow_last_partition ? "yes" : "no",
	         agent_after_name(r->plan.after));
	return 0;
}

static int send_inventory(struct run *r)
{
	const char *root = r->o->sysroot ? r->o->sysroot : "/";
	char *body, err[768];
	json_t *doc;
	int e;

	e = agent_inventory_collect(root, 0, &doc);
	if (e < 0)
		return fail(r, e, "inventory of %s: %s", root, strerror(-e));
	body = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(doc);
	if (!body)
		return fail(r, -ENOMEM, "inventory: out of memory");
	e = agent_api_call(&r->api, "/inventory", body, RB_MIN(r->o->retries, 3U), NULL, NULL, err,
	                   sizeof(err));
	free(body);
	if (e < 0)
		return fail(r, e, "sending the inventory: %s", err);
	log_info("inventory sent");
	return 0;
}

static struct agent_fetch_opts fetch_opts(const struct run *r)
{
	return (struct agent_fetch_opts){ .timeout_s = r->o->timeout_s,
		                          .retries = 4,
		                          .parallel = 4,
		                          .max_recv_speed = r->o->max_rate,
		                          .hosts = &r->hosts };
}

/* Fetches and verifies the manifest before anything is wiped, for the
 * disk size. The writer verifies it again: it trusts nothing it did not
 * fetch itself. */
static int manifest_check(struct run *r, uint64_t *ret_disk_size)
{
	const struct agent_plan *p = &r->plan;
	struct agent_fetch_opts fo = fetch_opts(r);
	char url[AGENT_URL_MAX + 200], surl[sizeof(url) + 8], err[768];
	char *data = NULL, *sig = NULL;
	struct img_manifest *m = NULL;
	size_t len, slen;
	int e;

	snprintf(url, sizeof(url), "%s/images/%s/%s.manifest.json", p->image.repo, p->image.name,
	         p->image.version);
	snprintf(surl, sizeof(surl), "%s.sig", url);
	if ((e = agent_fetch_small(url, IMG_MANIFEST_MAX_SIZE, &fo, &data, &len, NULL, err,
	                           sizeof(err))) < 0 ||
	    (e = agent_fetch_small(surl, SIG_MAX, &fo, &sig, &slen, NULL, err, sizeof(err))) < 0) {
		fail(r, e, "image %s %s: %s", p->image.name, p->image.version, err);
		goto out;
	}
	e = rb_verify((const struct rb_key *const *)r->keys, r->n_keys, data, len, sig, slen);
	if (e < 0) {
		fail(r, e, "image %s %s: %s: %s", p->image.name, p->image.version, surl,
		     e == -EINVAL ? "malformed signature"
		                  : "signature does not verify with any trusted key");
		goto out;
	}
	e = img_manifest_parse(data, len, &m, err, sizeof(err));
	if (e < 0) {
		fail(r, e, "image %s %s: %s: %s", p->image.name, p->image.version, url, err);
		goto out;
	}
	*ret_disk_size = m->disk_size;
	img_manifest_free(m);
out:
	free(data);
	free(sig);
	return e;
}

/* Before anything is wiped: a disk must exist, be a block device and hold
 * the image. Below /dev a missing disk must never turn into a regular file
 * the writer creates (in an initramfs that is RAM: "imaged", and nothing
 * on the disk). Elsewhere (tests, operators) a file is created. */
static int check_target(struct run *r, uint64_t disk_size)
{
	bool in_dev = strncmp(r->target, "/dev/", 5) == 0;
	uint64_t size = 0;
	struct stat st;
	int fd, e;

	if (stat(r->target, &st) < 0) {
		e = -errno;
		if (e == -ENOENT && !in_dev)
			return 0;
		return fail(r, e, "target %s: %s", r->target, strerror(-e));
	}
	if (S_ISREG(st.st_mode) && !in_dev)
		return 0;
	if (!S_ISBLK(st.st_mode))
		return fail(r, -EINVAL, "target %s: not a block device", r->target);
	fd = open(r->target, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, BLKGETSIZE64, &size) < 0) {
		e = -errno;
		if (fd >= 0)
			close(fd);
		return fail(r, e, "target %s: %s", r->target, strerror(-e));
	}
	close(fd);
	if (size < disk_size)
		return fail(r, -ENOSPC, "target %s has %llu bytes, the image needs %llu", r->target,
		            (unsigned long long)size, (unsigned long long)disk_size);
	return 0;
}

static int choose_target(struct run *r, uint64_t disk_size)
{
	char err[768];
	int e;

	if (r->o->target)
		snprintf(r->target, sizeof(r->target), "%s", r->o->target);
	else if (r->plan.disk[0])
		snprintf(r->target, sizeof(r->target), "%s", r->plan.disk);
	else if ((e = agent_pick_disk(r->o->sysroot ? r->o->sysroot : "/", disk_size, r->target,
	                              sizeof(r->target), err, sizeof(err))) < 0)
		return fail(r, e, "choosing a disk: %s", err);
	log_info("target %s%s", r->target,
	         r->o->target      ? " (--target)"
	         : r->plan.disk[0] ? " (plan)"
	                           : " (picked)");
	return check_target(r, disk_size);
}

static int status(struct run *r, const char *state, const char *step, const char *message,
                  const struct agent_progress *p)
{
	char err[768];
	int e;

	e = agent_post_status(&r->api, state, step, message, p, RB_MIN(r->o->retries, 3U), err,
	                      sizeof(err));
	if (e < 0)
		return fail(r, e, "reporting state %s: %s", state, err);
	log_info("state %s%s%s", state, step ? ": " : "", step ? step : "");
	return 0;
}

/* "imaged" with the summary, the image's byte counts and, after stage 2,
 * what is installed. */
static int status_imaged(struct run *r)
{
	json_t *extra = NULL;
	char err[768];
	int e;

	if (r->installed) {
		extra = json_pack("{s:{s:{s:s, s:s}, s:O}}", "installed", "image", "name",
		                  r->plan.image.name, "version", r->plan.image.version, "packages",
		                  r->installed);
		if (!extra)
			return fail(r, -ENOMEM, "out of memory");
	}
	e = agent_post_status_ex(&r->api, "imaged", "done", r->summary, &r->written, extra,
	                         RB_MIN(r->o->retries, 3U), err, sizeof(err));
	json_decref(extra);
	if (e < 0)
		return fail(r, e, "reporting state imaged: %s", err);
	log_info("state imaged: done");
	return 0;
}

static int do_wipe(struct run *r, char *report, size_t replen)
{
	struct agent_reporter rp;
	char step[PATH_MAX + 64], err[768];
	char what[256];
	struct stat st;
	int e;

	snprintf(report, replen, "wipe none");
	if (r->plan.wipe == AGENT_WIPE_NONE)
		return 0;
	snprintf(step, sizeof(step), "wipe %s %s", agent_wipe_mode_name(r->plan.wipe), r->target);
	if ((e = status(r, "wiping", step, NULL, NULL)) < 0)
		return e;
	if (stat(r->target, &st) < 0 && errno == ENOENT && strncmp(r->target, "/dev/", 5) != 0) {
		rb_errf(report, replen, "wipe %s: %s does not exist yet",
		        agent_wipe_mode_name(r->plan.wipe), r->target);
		return 0;
	}
	e = agent_reporter_start(&rp, &r->c, r->o->timeout_s, "wiping", step);
	if (e < 0)
		return fail(r, e, "cannot start the progress reporter");
	e = agent_wipe(r->target, r->plan.wipe, agent_reporter_update, &rp, what, sizeof(what), err,
	               sizeof(err));
	agent_reporter_stop(&rp);
	if (e < 0)
		return fail(r, e, "wipe: %s", err);
	rb_errf(report, replen, "wipe %s", what);
	log_info("%s", report);
	return 0;
}

static int do_image(struct run *r, char *report, size_t replen)
{
	const struct agent_plan *p = &r->plan;
	struct agent_image_opts io = { .repo = p->image.repo,
		                       .pubs = (const struct rb_key *const *)r->keys,
		                       .n_pubs = r->n_keys,
		                       .name = p->image.name,
		                       .version = p->image.version,
		                       .target = r->target,
		                       /* Delta: what the disk already holds (the old
		                        * version, or what this agent wrote before a
		                        * reboot) is hashed and not fetched again. A
		                        * full wipe left nothing worth hashing. */
		                       .reimage = p->wipe != AGENT_WIPE_FULL,
		                       .progress = false,
		                       .fetch = fetch_opts(r) };
	struct agent_image_stats st;
	struct agent_reporter rp;
	struct agent_progress last;
	char step[PATH_MAX + 200], err[768];
	int e;

	snprintf(step, sizeof(step), "image %s %s to %s", p->image.name, p->image.version,
	         r->target);
	if ((e = status(r, "imaging", step, NULL, NULL)) < 0)
		return e;
	e = agent_reporter_start(&rp, &r->c, r->o->timeout_s, "imaging", step);
	if (e < 0)
		return fail(r, e, "cannot start the progress reporter");
	io.progress_cb = agent_reporter_update;
	io.progress_arg = &rp;
	e = agent_image_write(&io, &st, err, sizeof(err));
	last = agent_reporter_stop(&rp);
	if (e < 0)
		return fail(r, e, "image %s %s: %s", p->image.name, p->image.version, err);
	r->written = last;
	/* The last word on progress: everything, whatever the timer caught. */
	if (agent_post_status(&r->api, "imaging", step, NULL, &last, 0, err, sizeof(err)) < 0)
		log_debug("final progress report lost: %s", err);
	rb_errf(report, replen,
	        "image %s %s written to %s: %llu bytes in %.1f s, fetched %llu bytes in %u "
	        "requests, %u progress reports",
	        p->image.name, p->image.version, r->target, (unsigned long long)last.total,
	        (double)st.usec / 1e6, (unsigned long long)st.fetched_bytes, st.requests,
	        rp.posts + 1);
	log_info("%s", report);
	return 0;
}

/* The plain/rootfs counterpart of manifest_check(): the signed catalogue
 * entry, verified before anything is wiped. An uncompressed raw image
 * gives the disk size; for the others any disk will do at first (the
 * writer refuses one too small). */
static int plain_check(struct run *r, const struct agent_plain_opts *po, uint64_t *ret_min)
{
	enum agent_plain_filter f = AGENT_PLAIN_NONE;
	struct img_cat_plain ent;
	char err[768];
	bool tar = false;
	int e;

	e = agent_plain_lookup(po, &ent, NULL, err, sizeof(err));
	if (e < 0)
		return fail(r, e, "image %s %s: %s", po->name, po->version, err);
	if (agent_plain_kind_parse(ent.kind, &tar, &f) < 0)
		return fail(r, -EINVAL, "image %s %s: kind %s is not a plain image", po->name,
		            po->version, ent.kind);
	if (tar != (strcmp(r->plan.image.type, "rootfs") == 0))
		log_warn("the plan says %s, the signed catalogue says kind %s: following the "
		         "catalogue",
		         r->plan.image.type, ent.kind);
	*ret_min = !tar && f == AGENT_PLAIN_NONE ? ent.size : 1;
	return 0;
}

static int do_plain(struct run *r, struct agent_plain_opts *po, char *report, size_t replen)
{
	struct agent_plain_stats st;
	struct agent_reporter rp;
	struct agent_progress last;
	char step[PATH_MAX + 200], err[768];
	int e;

	snprintf(step, sizeof(step), "image %s %s (%s) to %s", po->name, po->version,
	         r->plan.image.type, r->target);
	if ((e = status(r, "imaging", step, NULL, NULL)) < 0)
		return e;
	e = agent_reporter_start(&rp, &r->c, r->o->timeout_s, "imaging", step);
	if (e < 0)
		return fail(r, e, "cannot start the progress reporter");
	po->target = r->target;
	po->progress_cb = agent_reporter_update;
	po->progress_arg = &rp;
	e = agent_plain_write(po, &st, err, sizeof(err));
	last = agent_reporter_stop(&rp);
	if (e < 0)
		return fail(r, e, "image %s %s: %s", po->name, po->version, err);
	r->written = last;
	if (agent_post_status(&r->api, "imaging", step, NULL, &last, 0, err, sizeof(err)) < 0)
		log_debug("final progress report lost: %s", err);
	rb_errf(report, replen,
	        "image %s %s (%s) written to %s: %llu bytes in %.1f s, fetched %llu bytes, %u "
	        "progress reports",
	        po->name, po->version, r->plan.image.type, r->target,
	        (unsigned long long)st.written_bytes, (double)st.usec / 1e6,
	        (unsigned long long)st.fetched_bytes, rp.posts + 1);
	log_info("%s", report);
	return 0;
}

static void stage2_step(void *arg, const char *step)
{
	struct run *r = arg;
	char err[256];

	log_info("state installing: %s", step);
	if (agent_post_status(&r->api, "installing", step, NULL, NULL, 0, err, sizeof(err)) < 0)
		log_debug("installing report lost: %s", err);
}

/* Whether the profile asks stage 2 for anything beyond the installed
 * agent: packages, a host name, keys, kernel arguments, a root partition. */
static bool stage2_wanted(const struct agent_plan *p)
{
	return p->n_packages || p->post.hostname[0] || p->post.n_ssh_keys ||
	       p->post.kernel_args[0] || p->post.root_partition;
}

/* Stage 2 into the imaged disk. Where it cannot run (a plain file target,
 * an image without an ext4/xfs partition: not a Linux root) it is skipped
 * with a warning when the profile asks for nothing but the installed
 * agent, and a failure otherwise (the node would lack what its profile
 * needs). */
static int do_stage2(struct run *r, char *report, size_t replen)
{
	struct agent_stage2_opts so = { .plan = &r->plan,
		                        .target = r->target,
		                        .server = r->c.server,
		                        .mac = r->c.mac,
		                        .pubs = (const struct rb_key *const *)r->keys,
		                        .n_pubs = r->n_keys,
		                        .pubdir = r->o->pubdir ? r->o->pubdir : DEFAULT_PUBDIR,
		                        .timeout_s = r->o->timeout_s,
		                        .script_timeout_s = r->o->script_timeout_s,
		                        .step = stage2_step,
		                        .step_arg = r,
		                        .hosts = &r->hosts };
	char err[2048];
	struct stat st;
	int e;

	report[0] = '\0';
	if (stat(r->target, &st) == 0 && !S_ISBLK(st.st_mode)) {
		if (stage2_wanted(&r->plan))
			return fail(r, -ENOTBLK,
			            "stage 2: %s is not a block device, and the profile has %zu "
			            "package(s) and settings for its root partition",
			            r->target, r->plan.n_packages);
		log_warn("stage 2 skipped: %s is not a block device (the profile asks for "
		         "nothing but the installed agent)",
		         r->target);
		rb_errf(report, replen, "; stage 2 skipped (not a block device)");
		return 0;
	}
	if ((e = status(r, "installing", "stage 2", NULL, NULL)) < 0)
		return e;
	e = agent_stage2(&so, &r->installed, report + 2, replen - 2, err, sizeof(err));
	if (e == -ENOENT && !stage2_wanted(&r->plan)) {
		log_warn("stage 2 skipped: %s (the profile asks for nothing but the installed "
		         "agent)",
		         err);
		rb_errf(report, replen, "; stage 2 skipped (no ext4/xfs root partition)");
		return 0;
	}
	if (e < 0)
		return fail(r, e, "stage 2: %s", err);
	report[0] = ';';
	report[1] = ' ';
	log_info("%s", report + 2);
	return 0;
}

static int do_provision(struct run *r)
{
	bool rackboot = strcmp(r->plan.image.type, "rackboot") == 0;
	char wrep[256], irep[512], growrep[256] = "", s2rep[REASON_MAX] = "";
	struct agent_plain_opts po = { 0 };
	uint64_t disk_size = 0;
	char err[512];
	int e;

	if ((e = load_keys(r->o->pubdir ? r->o->pubdir : DEFAULT_PUBDIR, r->keys, &r->n_keys, err,
	                   sizeof(err))) < 0)
		return fail(r, e, "%s", err);
	/* plain and rootfs: agent/plain.c, from the signed catalogue */
	po.repo = r->plan.image.repo;
	po.pubs = (const struct rb_key *const *)r->keys;
	po.n_pubs = r->n_keys;
	po.name = r->plan.image.name;
	po.version = r->plan.image.version;
	po.timeout_s = r->o->timeout_s;
	po.hosts = &r->hosts;
	if ((e = rackboot ? manifest_check(r, &disk_size) : plain_check(r, &po, &disk_size)) < 0 ||
	    (e = choose_target(r, disk_size)) < 0 || (e = do_wipe(r, wrep, sizeof(wrep))) < 0 ||
	    (e = rackboot ? do_image(r, irep, sizeof(irep))
	                  : do_plain(r, &po, irep, sizeof(irep))) < 0)
		return e;
	if (r->plan.grow_last_partition) {
		char rep[256];

		if ((e = status(r, "imaging", "grow the last partition", NULL, &r->written)) < 0)
			return e;
		e = agent_grow_last_partition(r->target, rep, sizeof(rep), err, sizeof(err));
		if (e < 0)
			return fail(r, e, "grow: %s", err);
		rb_errf(growrep, sizeof(growrep), "; grow %s", rep);
		log_info("%s", rep);
	}
	if (r->plan.has_stage2 && (e = do_stage2(r, s2rep, sizeof(s2rep))) < 0)
		return e;
	snprintf(r->summary, sizeof(r->summary), "%s; %s%s%s", irep, wrep, growrep, s2rep);
	/* With the image's byte counts: each report replaces the server's
	 * progress record, and "imaged" should still show what was written. */
	return status_imaged(r);
}

/* after = kexec: the installed kernel loaded, or a warning naming why it
 * cannot be and a firmware reboot. Either is reported as the step. */
static enum agent_after kexec_or_reboot(struct run *r)
{
	struct agent_kexec_opts ko = { .target = r->target,
		                       .root_partition = r->plan.post.root_partition,
		                       .extra_args = r->plan.post.kernel_args };
	char rep[AGENT_KEXEC_CMDLINE_MAX + 640], why[1024] = "nothing was imaged", err[256];
	bool ok = r->plan.action == AGENT_ACTION_IMAGE &&
	          agent_kexec_load(&ko, rep, sizeof(rep), why, sizeof(why)) == 0;

	if (ok) {
		log_info("%s", rep);
	} else {
		log_warn("kexec not possible: %s; rebooting through the firmware", why);
		snprintf(rep, sizeof(rep), "kexec not possible: %s; firmware reboot", why);
	}
	if (r->plan.action == AGENT_ACTION_IMAGE &&
	    agent_post_status(&r->api, "imaged", ok ? "kexec" : "reboot", rep, &r->written, 0, err,
	                      sizeof(err)) < 0)
		log_debug("kexec report lost: %s", err);
	return ok ? AGENT_AFTER_KEXEC : AGENT_AFTER_REBOOT;
}

static int do_after(struct run *r)
{
	enum agent_after a = r->plan.after;

	if (r->o->no_after || a == AGENT_AFTER_NONE) {
		log_info("after: %s (not done: %s)", agent_after_name(a),
		         r->o->no_after ? "--no-after" : "plan says none");
		return 0;
	}
	if (a == AGENT_AFTER_KEXEC)
		a = kexec_or_reboot(r);
	log_info("after: %s", agent_after_name(a));
	sync();
	if (a == AGENT_AFTER_KEXEC && reboot(RB_KEXEC) < 0) {
		log_warn("kexec: %s; rebooting through the firmware", strerror(errno));
		a = AGENT_AFTER_REBOOT;
	}
	if (reboot(a == AGENT_AFTER_REBOOT ? RB_AUTOBOOT : RB_POWER_OFF) < 0) {
		int e = -errno;

		return fail(r, e, "%s: %s", agent_after_name(a), strerror(-e));
	}
	return 0;
}

int agent_run(const struct agent_run_opts *o)
{
	struct run *r = calloc(1, sizeof(*r));
	int e, rc = 1;

	if (!r) {
		fputs("rackboot-agent run: out of memory\n", stderr);
		return 1;
	}
	r->o = o;
	if ((e = identity(r)) < 0) {
		fprintf(stderr, "rackboot-agent run: %s\n", r->reason);
		rc = e == -EINVAL ? 2 : 1;
		goto out;
	}
	if (agent_api_init(&r->api, r->c.server, r->c.mac, r->c.token, o->timeout_s) < 0) {
		fail(r, -ENOMEM, "out of memory");
		goto failed;
	}
	log_info("node %s, server %s", r->c.mac, r->c.server);
	if ((e = get_plan(r)) < 0)
		goto failed;
	e = send_inventory(r);
	if (e < 0 && r->plan.action == AGENT_ACTION_INVENTORY)
		goto failed;
	if (e < 0)
		log_warn("%s (going on: the image matters more)", r->reason);
	if (r->plan.action == AGENT_ACTION_IMAGE && (e = do_provision(r)) < 0)
		goto failed;
	if (r->summary[0])
		printf("%s\n", r->summary);
	else
		printf("inventory of %s sent\n", r->c.mac);
	fflush(stdout);
	if ((e = do_after(r)) < 0)
		goto failed;
	rc = 0;
	goto out;
failed:
	fprintf(stderr, "rackboot-agent run: failed: %s\n", r->reason);
	if (r->api.easy) {
		char err[768];

		if (agent_post_status(&r->api, "failed", r->have_plan ? "provision" : "plan",
		                      r->reason, NULL, 1, err, sizeof(err)) < 0)
			fprintf(stderr, "rackboot-agent run: could not report the failure: %s\n",
			        err);
	}
	rc = 1;
out:
	agent_api_fini(&r->api);
	for (size_t k = 0; k < r->n_keys; k++)
		rb_key_free(r->keys[k]);
	agent_plan_fini(&r->plan);
	json_decref(r->installed);
	free(r);
	return rc;
}

/* ---- the command ------------------------------------------------------------------- */

static void usage(FILE *o)
{
	fputs("usage: rackboot-agent run [--server URL] [--mac MAC] [--token T] [--mode M]\n"
	      "                          [--pubdir DIR] [--target DEV] [--sysroot DIR]\n"
	      "                          [--no-after] [--cmdline FILE] [--timeout-s N]\n"
	      "                          [--retries N] [--max-rate BYTES_PER_S]\n"
	      "                          [--script-timeout-s N]\n"
	      "Gets this node's plan from rackbootd and carries it out: inventory, wipe,\n"
	      "image, grow, stage 2 (packages, post-install settings, the installed agent),\n"
	      "then reboot or power off as the plan says.\n"
	      "  --server/--mac/--token/--mode  override rackboot.* of the kernel command line\n"
	      "  --pubdir DIR    trusted public keys *.pub (default " DEFAULT_PUBDIR ")\n"
	      "  --target DEV    write here instead of the plan's (or the picked) disk\n"
	      "  --sysroot DIR   read /proc and /sys below DIR (inventory, disk choice)\n"
	      "  --no-after      neither reboot nor power off at the end\n"
	      "  --cmdline FILE  read the kernel command line from FILE (default /proc/cmdline)\n"
	      "  --timeout-s N   connect timeout and stall window per request (default 30)\n"
	      "  --retries N     attempts after the first for the plan (default 8)\n"
	      "  --max-rate B    image bytes/s per transfer (default unlimited)\n"
	      "  --script-timeout-s N  limit of each stage-2 package script (default 300)\n"
	      "Exit: 0 done, 1 failure (reported to the server as state failed), 2 usage.\n",
	      o);
}

/* As the initramfs's PID 1 the agent must not return: the kernel would
 * panic. A failure shows its reason for a while and reboots; "after: none"
 * (or --no-after) keeps the node up. */
static int pid1_exit(int rc, bool no_after)
{
	if (getpid() != 1)
		return rc;
	if (rc != 0 && !no_after) {
		fprintf(stderr, "rackboot-agent: rebooting in %d s\n", PID1_FAIL_DELAY);
		sleep(PID1_FAIL_DELAY);
		sync();
		reboot(RB_AUTOBOOT);
	}
	for (;;)
		pause();
}

int agent_cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "mac", required_argument, NULL, 'm' },
		{ "token", required_argument, NULL, 't' },
		{ "mode", required_argument, NULL, 'M' },
		{ "pubdir", required_argument, NULL, 'p' },
		{ "target", required_argument, NULL, 'T' },
		{ "sysroot", required_argument, NULL, 'r' },
		{ "no-after", no_argument, NULL, 'n' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "timeout-s", required_argument, NULL, 'o' },
		{ "retries", required_argument, NULL, 'R' },
		{ "max-rate", required_argument, NULL, 'X' },
		{ "script-timeout-s", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_run_opts o = { .timeout_s = 30, .retries = 8 };
	long long v;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			o.server = optarg;
			break;
		case 'm':
			o.mac = optarg;
			break;
		case 't':
			o.token = optarg;
			break;
		case 'M':
			o.mode = optarg;
			break;
		case 'p':
			o.pubdir = optarg;
			break;
		case 'T':
			o.target = optarg;
			break;
		case 'r':
			o.sysroot = optarg;
			break;
		case 'n':
			o.no_after = true;
			break;
		case 'c':
			o.cmdline_path = optarg;
			break;
		case 'o':
			if (rb_strtonum(optarg, 1, 3600, &v) < 0) {
				fputs("rackboot-agent run: --timeout-s: 1..3600\n", stderr);
				return 2;
			}
			o.timeout_s = (unsigned)v;
			break;
		case 'R':
			if (rb_strtonum(optarg, 0, 100, &v) < 0) {
				fputs("rackboot-agent run: --retries: 0..100\n", stderr);
				return 2;
			}
			o.retries = (unsigned)v;
			break;
		case 'X':
			if (rb_strtonum(optarg, 0, 1LL << 40, &v) < 0) {
				fputs("rackboot-agent run: --max-rate: bytes/s, 0..2^40\n", stderr);
				return 2;
			}
			o.max_rate = (uint64_t)v;
			break;
		case 'S':
			if (rb_strtonum(optarg, 1, 86400, &v) < 0) {
				fputs("rackboot-agent run: --script-timeout-s: 1..86400\n", stderr);
				return 2;
			}
			o.script_timeout_s = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fputs("rackboot-agent run: libcurl initialisation failed\n", stderr);
		return pid1_exit(1, o.no_after);
	}
	rc = agent_run(&o);
	curl_global_cleanup();
	return pid1_exit(rc, o.no_after);
}
