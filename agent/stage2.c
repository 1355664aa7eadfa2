/* stage2: after stage 1 wrote the image (and grew its last partition),
 * the node's packages and settings go into it, from the initramfs.
 *
 *  1. The partitions: BLKRRPART makes the kernel read the new table (a
 *     loop device needs its partscan flag: losetup -P), sysfs lists them
 *     (/sys/dev/block/M:m/<part>/{partition,size,dev}). A kernel without
 *     the table's parser lists none: then the table (GPT, or MBR
 *     primaries) is read here and the partitions given to the kernel with
 *     BLKPG, as partx does. Each one's first bytes say ext2/3/4 or xfs. The root is the plan's
 * root_partition or the largest ext4/xfs partition.
 *  2. It is mounted on a private mkdtemp directory (a device node of our
 *     own there when /dev has none yet), with /dev bound and /proc and /sys
 *     mounted inside for the package scripts.
 *  3. The catalogue is fetched and its signature checked, the plan's
 *     packages (exact versions) resolved with their dependencies
 *     (agent/pkgresolve.c) for the node's arch and installed in that order
 *     (agent/pkginstall.c: hash before extract, secure extraction, scripts
 *     chrooted with a time limit, each package all or nothing, recorded in
 *     var/lib/rackboot/installed.json).
 *  4. The post-install settings and the installed agent (agent/postinst.c).
 *  5. Everything unmounted (also on failure), after a sync.
 *
 * Owns the temporary directory, its device node and the mounts. Never
 * mounts anything but a partition of the target, never leaves a mount
 * behind. */
#include "agent/stage2.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/blkpg.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "agent/pkginstall.h"
#include "agent/rootfs.h"
#include "agent/pkgresolve.h"
#include "agent/pkgstate.h"
#include "agent/plain.h"
#include "agent/plan.h"
#include "agent/postinst.h"
#include "common/catalog.h"
#include "common/log.h"
#include "common/util.h"

#define MAX_PARTS 128
#define HEAD_MAX  (1024 * 1024) /* the disk's first bytes read for its table */

/* ---- partitions ------------------------------------------------------------------- */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int agent_table_parts(const uint8_t *head, size_t len, unsigned lbs, uint64_t (*ret)[3], size_t max,
                      size_t *ret_n)
{
	size_t n = 0;

	if (lbs >= 512 && len >= (size_t)lbs + 92 && !memcmp(head + lbs, "EFI PART", 8)) {
		for (unsigned i = 0; i < 128 && n < max; i++) {
			uint64_t first, last;
			int e = agent_gpt_entry(head, len, lbs, i, &first, &last);

			if (e == -EINVAL)
				break;
			if (e < 0)
				continue;
			ret[n][0] = i + 1;
			ret[n][1] = first * lbs;
			ret[n][2] = (last - first + 1) * lbs;
			n++;
		}
		*ret_n = n;
		return 0;
	}
	if (len < 512 || head[510] != 0x55 || head[511] != 0xaa)
		return -ENOENT;
	for (unsigned i = 0; i < 4 && n < max; i++) {
		const uint8_t *e = head + 446 + 16 * i;
		uint8_t type = e[4];

		if (!type || type == 0xee || type == 0x05 || type == 0x0f || type == 0x85 ||
		    !le32(e + 8) || !le32(e + 12))
			continue;
		ret[n][0] = i + 1;
		ret[n][1] = (uint64_t)le32(e + 8) * lbs;
		ret[n][2] = (uint64_t)le32(e + 12) * lbs;
		n++;
	}
	*ret_n = n;
	return 0;
}

const char *agent_fs_type(const uint8_t *buf, size_t len)
{
	if (len >= 4 && !memcmp(buf, "XFSB", 4))
		return "xfs";
	/* ext2/3/4: s_magic 0xEF53 at 1024 + 56; the ext4 driver mounts all three */
	if (len >= 1024 + 58 && buf[1024 + 56] == 0x53 && buf[1024 + 57] == 0xef)
		return "ext4";
	return "";
}

int agent_pick_root(const struct agent_rootpart *parts, size_t n, unsigned want, size_t *ret_idx,
                    char *err, size_t errlen)
{
	char seen[512] = "";
	size_t best = n;

	for (size_t i = 0; i < n; i++) {
		size_t o = strlen(seen);

		snprintf(seen + o, sizeof(seen) - o, "%s%u %s %llu bytes", o ? ", " : "",
		         parts[i].nr, parts[i].fstype[0] ? parts[i].fstype : "(no ext4/xfs)",
		         (unsigned long long)parts[i].size);
		if (want) {
			if (parts[i].nr == want)
				best = i;
		} else if (parts[i].fstype[0] &&
		           (best == n || parts[i].size > parts[best].size ||
		            (parts[i].size == parts[best].size && parts[i].nr < parts[best].nr))) {
			best = i;
		}
	}
	if (best == n)
		return agent_errf(
		        err, errlen, -ENOENT,
		        want ? "root partition %u is not on the disk (partitions: %s)"
		             : "no ext4 or xfs partition for the root%.0u (partitions: %s)",
		        want, seen[0] ? seen : "none");
	if (!parts[best].fstype[0])
		return agent_errf(
		        err, errlen, -EINVAL,
		        "root partition %u holds no ext4 or xfs filesystem (partitions: %s)", want,
		        seen);
	*ret_idx = best;
	return 0;
}

static int sys_read(int dirfd, const char *path, char *buf, size_t len)
{
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
	ssize_t k;

	if (fd < 0)
		return -errno;
	k = read(fd, buf, len - 1);
	close(fd);
	if (k < 0)
		return -EIO;
	while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == ' '))
		k--;
	buf[k] = '\0';
	return 0;
}

/* Opens the partition's device: /dev/<name> when it is that device, else a
 * node of our own in dir (devtmpfs may not have made it yet). */
static int open_part(const struct agent_rootpart *p, const char *dir, char *path, size_t pathlen)
{
	dev_t dev = makedev(p->major, p->minor);
	struct stat st;
	int fd;

	snprintf(path, pathlen, "/dev/%s", p->name);
	if (stat(path, &st) == 0 && S_ISBLK(st.st_mode) && st.st_rdev == dev) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0)
			return fd;
	}
	snprintf(path, pathlen, "%s/part%u", dir, p->nr);
	unlink(path);
	if (mknod(path, S_IFBLK | 0600, dev) < 0)
		return -errno;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The partitions sysfs lists below sys (/sys/dev/block/M:m). */
static int scan_sysfs(const char *sys, struct agent_rootpart *parts, size_t *ret_n, char *err,
                      size_t errlen)
{
	struct dirent *de;
	char buf[64];
	size_t n = 0;
	DIR *d;

	d = opendir(sys);
	if (!d)
		return agent_errf(err, errlen, -errno, "%s: %s", sys, strerror(errno));
	while ((de = readdir(d)) && n < MAX_PARTS) {
		struct agent_rootpart *p = &parts[n];
		char path[300];
		long long v;
		unsigned ma, mi;
		char *colon;

		if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(p->name))
			continue;
		snprintf(path, sizeof(path), "%s/partition", de->d_name);
		if (sys_read(dirfd(d), path, buf, sizeof(buf)) < 0 ||
		    rb_strtonum(buf, 1, 4096, &v) < 0)
			continue;
		memset(p, 0, sizeof(*p));
		p->nr = (unsigned)v;
		snprintf(p->name, sizeof(p->name), "%s", de->d_name);
		snprintf(path, sizeof(path), "%s/size", de->d_name);
		if (sys_read(dirfd(d), path, buf, sizeof(buf)) < 0 ||
		    rb_strtonum(buf, 0, INT64_MAX / 512, &v) < 0)
			continue;
		p->size = (uint64_t)v * 512;
		snprintf(path, sizeof(path), "%s/dev", de->d_name);
		if (sys_read(dirfd(d), path, buf, sizeof(buf)) < 0 || !(colon = strchr(buf, ':')))
			continue;
		*colon = '\0';
		if (rb_strtonum(buf, 0, 4095, &v) < 0)
			continue;
		ma = (unsigned)v;
		if (rb_strtonum(colon + 1, 0, 1048575, &v) < 0)
			continue;
		mi = (unsigned)v;
		p->major = ma;
		p->minor = mi;
		n++;
	}
	closedir(d);
	*ret_n = n;
	return 0;
}

/* Reads the disk's table and hands its partitions to the kernel (BLKPG). */
static int add_parts(int fd, const char *target, char *err, size_t errlen)
{
	uint64_t(*tab)[3] = calloc(MAX_PARTS, sizeof(*tab));
	uint8_t *head = malloc(HEAD_MAX);
	unsigned lbs = 512;
	size_t n = 0;
	int ssz = 0, e;

	if (!tab || !head) {
		e = -ENOMEM;
		goto out;
	}
	if (ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz >= 512)
		lbs = (unsigned)ssz;
	e = rb_pread_all(fd, head, HEAD_MAX, 0);
	if (e < 0) {
		e = agent_errf(err, errlen, e, "%s: reading its partition table: %s", target,
		               strerror(-e));
		goto out;
	}
	if (agent_table_parts(head, HEAD_MAX, lbs, tab, MAX_PARTS, &n) < 0 || n == 0) {
		e = agent_errf(err, errlen, -ENOENT, "%s: the image has no partition table",
		               target);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct blkpg_partition part = { .start = (long long)tab[i][1],
			                        .length = (long long)tab[i][2],
			                        .pno = (int)tab[i][0] };
		struct blkpg_ioctl_arg arg = { .op = BLKPG_ADD_PARTITION,
			                       .datalen = sizeof(part),
			                       .data = &part };

		if (ioctl(fd, BLKPG, &arg) < 0 && errno != EBUSY) {
			e = agent_errf(err, errlen, -errno,
			               "%s: adding partition %llu to the kernel (BLKPG): %s%s",
			               target, (unsigned long long)tab[i][0], strerror(errno),
			               errno == EINVAL ? " (a loop device needs losetup -P)" : "");
			goto out;
		}
	}
	e = 0;
out:
	free(tab);
	free(head);
	return e;
}

/* The target's partitions after the kernel read its table again. */
static int list_parts(const char *target, const char *dir, struct agent_rootpart *parts,
                      size_t *ret_n, char *err, size_t errlen)
{
	char sys[128];
	struct stat st;
	size_t n = 0;
	int fd, e = 0;

	if (stat(target, &st) < 0)
		return agent_errf(err, errlen, -errno, "%s: %s", target, strerror(errno));
	if (!S_ISBLK(st.st_mode))
		return agent_errf(err, errlen, -ENOTBLK,
		                  "%s is not a block device: stage 2 mounts the root partition of "
		                  "the imaged disk (attach an image file with losetup -P)",
		                  target);
	fd = open(target, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return agent_errf(err, errlen, -errno, "%s: %s", target, strerror(errno));
	/* Several tries: udev may still hold the disk after the write. */
	for (int i = 0; i < 20; i++) {
		e = ioctl(fd, BLKRRPART) < 0 ? -errno : 0;
		if (e != -EBUSY)
			break;
		usleep(100000);
	}
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(st.st_rdev), minor(st.st_rdev));
	e = scan_sysfs(sys, parts, &n, err, errlen);
	if (e == 0 && n == 0) {
		e = add_parts(fd, target, err, errlen);
		if (e == 0)
			e = scan_sysfs(sys, parts, &n, err, errlen);
	}
	close(fd);
	if (e < 0)
		return e;
	for (size_t i = 0; i < n; i++) {
		uint8_t head[2048];
		char path[PATH_MAX];
		int pfd = open_part(&parts[i], dir, path, sizeof(path));

		if (pfd < 0)
			continue;
		if (rb_pread_all(pfd, head, sizeof(head), 0) == 0)
			snprintf(parts[i].fstype, sizeof(parts[i].fstype), "%s",
			         agent_fs_type(head, sizeof(head)));
		close(pfd);
	}
	*ret_n = n;
	return 0;
}

/* ---- mounts --------------------------------------------------------------------------- */

struct mounts {
	char dir[64];    /* the private directory */
	char root[80];   /* dir/root: the mount point */
	char sub[3][96]; /* dev, proc, sys inside the root, "" when not mounted */
	bool mounted;
};

static void unmount_one(const char *path)
{
	for (int i = 0; i < 10; i++) {
		if (umount2(path, 0) == 0 || errno == EINVAL || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		usleep(100000);
	}
	umount2(path, MNT_DETACH);
}

static void unmount_all(struct mounts *m)
{
	for (int i = 2; i >= 0; i--)
		if (m->sub[i][0]) {
			unmount_one(m->sub[i]);
			m->sub[i][0] = '\0';
		}
	if (m->mounted) {
		sync();
		unmount_one(m->root);
		m->mounted = false;
	}
}

/* /dev bound, /proc and /sys mounted inside the root where it has those
 * directories: Debian's package scripts expect them. */
static void mount_api(struct mounts *m)
{
	static const struct {
		const char *dir, *src, *type;
		unsigned long flags;
	} api[] = {
		{ "dev", "/dev", NULL, MS_BIND },
		{ "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC },
		{ "sys", "sysfs", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY },
	};

	for (size_t i = 0; i < RB_ARRAY_SIZE(api); i++) {
		char path[96];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", m->root, api[i].dir);
		if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (mount(api[i].src, path, api[i].type, api[i].flags, NULL) == 0)
			snprintf(m->sub[i], sizeof(m->sub[i]), "%s", path);
	}
}

/* ---- packages ---------------------------------------------------------------------------- */

static const char *node_arch(const struct agent_stage2_opts *o, struct utsname *u)
{
	if (o->arch)
		return o->arch;
	if (uname(u) < 0)
		return NULL;
	return agent_pkg_arch_of_machine(u->machine);
}

static int install_packages(const struct agent_stage2_opts *o, const char *root, unsigned *ret_n,
                            char *err, size_t errlen)
{
	const struct agent_plan *pl = o->plan;
	struct agent_pkg_opts po = { .repo = pl->image.repo,
		                     .pubs = o->pubs,
		                     .n_pubs = o->n_pubs,
		                     .root = root,
		                     .script_timeout_s = o->script_timeout_s,
		                     .timeout_s = o->timeout_s,
		                     .hosts = o->hosts };
	const struct img_cat_package **order = NULL;
	struct img_catalog *cat = NULL;
	char **wanted = NULL, **specs = NULL, step[300];
	struct utsname u;
	size_t n_order = 0;
	int e;

	*ret_n = 0;
	if (!pl->n_packages)
		return 0;
	po.arch = node_arch(o, &u);
	if (!po.arch)
		return agent_errf(err, errlen, -errno, "uname: %s", strerror(errno));
	wanted = calloc(pl->n_packages, sizeof(*wanted));
	if (!wanted)
		return -ENOMEM;
	for (size_t i = 0; i < pl->n_packages; i++)
		if (asprintf(&wanted[i], "%s=%s", pl->packages[i].name, pl->packages[i].version) <
		    0) {
			wanted[i] = NULL;
			e = -ENOMEM;
			goto out;
		}
	if (o->step)
		o->step(o->step_arg, "catalogue");
	e = agent_pkg_fetch_catalog(&po, &cat, err, errlen);
	if (e < 0)
		goto out;
	e = agent_pkg_resolve(cat, po.arch, (const char *const *)wanted, pl->n_packages, &order,
	                      &n_order, err, errlen);
	if (e < 0)
		goto out;
	specs = calloc(n_order ? n_order : 1, sizeof(*specs));
	if (!specs) {
		e = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n_order; i++)
		if (asprintf(&specs[i], "%s=%s", order[i]->name, order[i]->version) < 0) {
			specs[i] = NULL;
			e = -ENOMEM;
			goto out;
		}
	/* One call per package: a step report before each. */
	for (size_t i = 0; i < n_order; i++) {
		snprintf(step, sizeof(step), "package %zu/%zu %s %s", i + 1, n_order,
		         order[i]->name, order[i]->version);
		if (o->step)
			o->step(o->step_arg, step);
		e = agent_pkg_install_cat(&po, cat, (const char *const *)&specs[i], 1, err, errlen);
		if (e < 0)
			goto out;
		(*ret_n)++;
	}
out:
	for (size_t i = 0; wanted && i < pl->n_packages; i++)
		free(wanted[i]);
	for (size_t i = 0; specs && i < n_order; i++)
		free(specs[i]);
	free(wanted);
	free(specs);
	free(order);
	img_catalog_free(cat);
	return e;
}

/* ---- the stage -------------------------------------------------------------------------- */

int agent_stage2(const struct agent_stage2_opts *o, json_t **ret_installed, char *report,
                 size_t replen, char *err, size_t errlen)
{
	const struct agent_plan *pl = o->plan;
	struct agent_rootpart *parts = calloc(MAX_PARTS, sizeof(*parts));
	struct mounts m = { .mounted = false };
	struct agent_postinst pi = { 0 };
	char pirep[512] = "", path[PATH_MAX];
	char hosts[AGENT_URL_MAX] = ""; /* agent.conf's repo_hosts */
	json_t *installed = NULL;
	size_t n = 0, idx = 0;
	unsigned n_pkgs = 0;
	int e, rootfd = -1, pfd;

	if (!parts)
		return -ENOMEM;
	snprintf(m.dir, sizeof(m.dir), "/tmp/rackboot-stage2.XXXXXX");
	if (!mkdtemp(m.dir)) {
		e = agent_errf(err, errlen, -errno, "mkdtemp %s: %s", m.dir, strerror(errno));
		free(parts);
		return e;
	}
	snprintf(m.root, sizeof(m.root), "%s/root", m.dir);
	if (mkdir(m.root, 0700) < 0) {
		e = agent_errf(err, errlen, -errno, "%s: %s", m.root, strerror(errno));
		goto out;
	}
	if ((e = list_parts(o->target, m.dir, parts, &n, err, errlen)) < 0 ||
	    (e = agent_pick_root(parts, n, pl->post.root_partition, &idx, err, errlen)) < 0)
		goto out;
	pfd = open_part(&parts[idx], m.dir, path, sizeof(path));
	if (pfd < 0) {
		e = agent_errf(err, errlen, pfd, "partition %s: %s", parts[idx].name,
		               strerror(-pfd));
		goto out;
	}
	close(pfd);
	if (mount(path, m.root, parts[idx].fstype, MS_NOATIME, NULL) < 0) {
		e = agent_errf(err, errlen, -errno, "mounting %s (%s) of %s: %s", parts[idx].name,
		               parts[idx].fstype, o->target, strerror(errno));
		goto out;
	}
	m.mounted = true;
	mount_api(&m);
	e = install_packages(o, m.root, &n_pkgs, err, errlen);
	if (e < 0)
		goto out;
	if (o->step)
		o->step(o->step_arg, "post-install settings");
	rootfd = open(m.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		e = agent_errf(err, errlen, -errno, "%s: %s", m.root, strerror(errno));
		goto out;
	}
	pi.profile = pl->profile;
	pi.hostname = pl->post.hostname;
	pi.ssh_keys = pl->post.ssh_keys;
	pi.n_ssh_keys = pl->post.n_ssh_keys;
	pi.kernel_args = pl->post.kernel_args;
	pi.server = o->server;
	pi.mac = o->mac;
	pi.token = pl->node_token;
	pi.repo = pl->image.repo;
	/* Whole entries only: a host cut short could name another host. */
	for (size_t i = 0, o2 = 0; i < pl->image.n_repo_hosts; i++) {
		size_t need = strlen(pl->image.repo_hosts[i]) + (i ? 1 : 0);

		if (o2 + need >= sizeof(hosts)) {
			log_warn("agent.conf: repo_hosts longer than %zu bytes: %zu of %zu hosts "
			         "written",
			         sizeof(hosts) - 1, i, pl->image.n_repo_hosts);
			break;
		}
		o2 += (size_t)snprintf(hosts + o2, sizeof(hosts) - o2, "%s%s", i ? " " : "",
		                       pl->image.repo_hosts[i]);
	}
	pi.repo_hosts = hosts;
	pi.image = pl->image.name;
	pi.image_version = pl->image.version;
	pi.interval_s = pl->post.update_interval_s;
	pi.jitter_s = pl->post.update_jitter_s;
	pi.network_dhcp = pl->post.network_dhcp;
	pi.self = o->self ? o->self : "/proc/self/exe";
	pi.pubdir = o->pubdir;
	pi.script_timeout_s = o->script_timeout_s;
	e = agent_postinst_apply(rootfd, o->target, &pi, pirep, sizeof(pirep), err, errlen);
	if (e < 0)
		goto out;
	e = agent_pkg_state_list(rootfd, &installed, err, errlen);
	if (e < 0)
		goto out;
	snprintf(report, replen, "stage 2 on partition %u (%s, %s): %u package(s) installed; %s",
	         parts[idx].nr, parts[idx].name, parts[idx].fstype, n_pkgs, pirep);
out:
	if (rootfd >= 0) {
		syncfs(rootfd);
		close(rootfd);
	}
	unmount_all(&m);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/part%u", m.dir, parts[i].nr);
		unlink(path);
	}
	rmdir(m.root);
	rmdir(m.dir);
	free(parts);
	if (e < 0) {
		json_decref(installed);
		return e;
	}
	*ret_installed = installed;
	return 0;
}
