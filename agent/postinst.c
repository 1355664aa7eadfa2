/* postinst: the settings a profile gives a node, written into the freshly
 * imaged (and package-installed) root by stage 2.
 *
 * Files come from templates built into the agent (templates/postinstall/,
 * {{name}} placeholders); every value was checked when the plan was parsed
 * (common/nodecfg.c: host names, SSH key lines and kernel arguments hold
 * nothing a shell, a boot loader or sshd would read as more than data).
 * What is written:
 *   etc/hostname, etc/hosts                  when the plan names a host
 *   root/.ssh/authorized_keys (0600, dir 0700) when it has SSH keys
 *   etc/default/grub.d/rackboot.cfg          when it has kernel arguments:
 *     GRUB_CMDLINE_LINUX extended, then the target's update-grub (if it
 *     has one and a /boot/grub/grub.cfg) run chrooted; and the APPEND lines
 *     of extlinux/syslinux configs the target has get the arguments too
 *   etc/rackboot/agent.conf (0600: the node token), the agent binary as
 *     usr/sbin/rackboot-agent, the trusted keys in etc/rackboot/trusted/,
 *     etc/systemd/system/rackboot-agent.service enabled for
 *     multi-user.target, etc/init.d/rackboot-agent (+ rc2-5.d links when the
 *     target has those directories).
 *   the boot NIC by DHCP, found by its MAC, when the plan's network is
 *     "dhcp", in the first way the image has: etc/netplan/ ->
 *     etc/netplan/60-rackboot.yaml (0600); etc/network/interfaces (ifupdown)
 *     -> etc/systemd/network/10-rackboot-boot.link naming it boot0 and
 *     etc/network/interfaces.d/rackboot-boot0 (and a "source" line when
 *     interfaces lacks one); systemd-networkd -> etc/systemd/network/
 *     10-rackboot-boot.network, networkd enabled; none of these: left alone
 *     and said in the report.
 * Each file is written beside its place and renamed over it, owned by
 * root, never through a symlink of the target.
 *
 * Owns nothing beyond one call. Never writes outside the root, never runs
 * a program outside a chroot of it. */
#include "agent/postinst.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/pkgscript.h"
#include "agent/pkgstate.h"
#include "agent/plain.h"
#include "common/util.h"
#include "pxe/embedded.h" /* struct rb_embedded_file only */

#define CONFIG_MAX (1024 * 1024) /* a boot loader config larger than this is left alone */
#define BIN_MAX    (256 * 1024 * 1024)

extern const struct rb_embedded_file agent_postinst_files[];

const char *agent_postinst_template(const char *name, size_t *ret_len)
{
	for (const struct rb_embedded_file *f = agent_postinst_files; f->name; f++)
		if (!strcmp(f->name, name)) {
			*ret_len = f->len;
			return f->data;
		}
	return NULL;
}

int agent_render(const char *tmpl, size_t len, const struct agent_var *vars, size_t n_vars,
                 char **ret, char *err, size_t errlen)
{
	size_t cap = len + 1, o = 0;
	char *out = malloc(cap);

	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < len;) {
		const char *val = NULL;
		size_t k = 1, vl;

		if (i + 1 < len && tmpl[i] == '{' && tmpl[i + 1] == '{') {
			const char *end = memmem(tmpl + i + 2, len - i - 2, "}}", 2);
			size_t nl;

			if (!end) {
				free(out);
				return agent_errf(err, errlen, -EINVAL, "template: unclosed {{");
			}
			nl = (size_t)(end - tmpl) - i - 2;
			for (size_t v = 0; v < n_vars && !val; v++)
				if (strlen(vars[v].name) == nl &&
				    !memcmp(vars[v].name, tmpl + i + 2, nl))
					val = vars[v].value;
			if (!val) {
				free(out);
				return agent_errf(err, errlen, -ENOENT,
				                  "template: unknown placeholder {{%.*s}}",
				                  (int)RB_MIN(nl, 40), tmpl + i + 2);
			}
			k = nl + 4;
		}
		vl = val ? strlen(val) : 1;
		if (o + vl + 1 > cap) {
			char *n;

			cap = (o + vl + 1) * 2;
			n = realloc(out, cap);
			if (!n) {
				free(out);
				return -ENOMEM;
			}
			out = n;
		}
		memcpy(out + o, val ? val : tmpl + i, vl);
		o += vl;
		i += k;
	}
	out[o] = '\0';
	*ret = out;
	return 0;
}

int agent_write_beneath(int rootfd, const char *path, const void *data, size_t len, mode_t mode,
                        char *err, size_t errlen)
{
	const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
	char dir[512], tmp[300];
	int dfd, fd, e = 0;

	if (!rb_path_is_safe(path) || strlen(base) + 16 > sizeof(tmp))
		return agent_errf(err, errlen, -EINVAL, "%s: not a safe path", path);
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
	dfd = slash ? agent_mkdir_beneath(rootfd, dir) : dup(rootfd);
	if (dfd < 0)
		return agent_errf(err, errlen, dfd < 0 && slash ? dfd : -errno, "%s: %s", dir,
		                  strerror(slash ? -dfd : errno));
	snprintf(tmp, sizeof(tmp), ".%s.rackboot-new", base);
	unlinkat(dfd, tmp, 0);
	fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		e = -errno;
		goto out;
	}
	if ((e = rb_write_all(fd, data, len)) == 0 &&
	    (fchown(fd, 0, 0) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0 ||
	     renameat(dfd, tmp, dfd, base) < 0))
		e = -errno;
	close(fd);
	if (e < 0)
		unlinkat(dfd, tmp, 0);
out:
	close(dfd);
	if (e < 0)
		return agent_errf(err, errlen, e, "writing %s: %s", path, strerror(-e));
	return 0;
}

/* Reads a regular file below rootfd (no symlink followed) of at most max
 * bytes: 0, -ENOENT when absent, -EFBIG, -errno. */
static int read_beneath(int rootfd, const char *path, size_t max, char **ret, size_t *ret_len)
{
	int fd = rb_open_beneath(rootfd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	char *buf;
	int e;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		e = S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
		close(fd);
		return e;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	e = st.st_size ? rb_pread_all(fd, buf, (size_t)st.st_size, 0) : 0;
	close(fd);
	if (e < 0) {
		free(buf);
		return e;
	}
	buf[st.st_size] = '\0';
	*ret = buf;
	*ret_len = (size_t)st.st_size;
	return 0;
}

/* Renders template name with vars and writes it to path. */
static int put(int rootfd, const char *name, const struct agent_var *vars, size_t n,
               const char *path, mode_t mode, char *err, size_t errlen)
{
	size_t len;
	const char *t = agent_postinst_template(name, &len);
	char *out = NULL;
	int e;

	if (!t)
		return agent_errf(err, errlen, -ENOENT, "template %s is not built in", name);
	e = agent_render(t, len, vars, n, &out, err, errlen);
	if (e == 0)
		e = agent_write_beneath(rootfd, path, out, strlen(out), mode, err, errlen);
	free(out);
	return e;
}

/* Replaces the symlink at path (below rootfd) by one to target. */
static int link_beneath(int rootfd, const char *dir, const char *name, const char *target,
                        char *err, size_t errlen)
{
	int dfd = agent_mkdir_beneath(rootfd, dir);
	char tmp[300];
	int e = 0;

	if (dfd < 0)
		return agent_errf(err, errlen, dfd, "%s: %s", dir, strerror(-dfd));
	snprintf(tmp, sizeof(tmp), ".%s.rackboot-new", name);
	unlinkat(dfd, tmp, 0);
	if (symlinkat(target, dfd, tmp) < 0 || renameat(dfd, tmp, dfd, name) < 0)
		e = -errno;
	if (e < 0)
		unlinkat(dfd, tmp, 0);
	close(dfd);
	if (e < 0)
		return agent_errf(err, errlen, e, "%s/%s: %s", dir, name, strerror(-e));
	return 0;
}

int agent_append_lines(const char *text, size_t len, const char *args, char **ret,
                       unsigned *ret_changed)
{
	size_t al = strlen(args), o = 0;
	char *out = malloc(len + 1 + (len / 2 + 1) * (al + 1));
	unsigned changed = 0;

	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < len;) {
		const char *nl = memchr(text + i, '\n', len - i);
		size_t ll = nl ? (size_t)(nl - text) - i : len - i, s = 0, end = ll;
		const char *line = text + i;

		while (s < ll && (line[s] == ' ' || line[s] == '\t'))
			s++;
		while (end > s &&
		       (line[end - 1] == ' ' || line[end - 1] == '\t' || line[end - 1] == '\r'))
			end--;
		memcpy(out + o, line, end);
		o += end;
		if (ll - s >= 6 && !strncasecmp(line + s, "append", 6) &&
		    (ll - s == 6 || line[s + 6] == ' ' || line[s + 6] == '\t') &&
		    !(end - s >= al + 1 && !memcmp(line + end - al, args, al) &&
		      (line[end - al - 1] == ' ' || line[end - al - 1] == '\t'))) {
			out[o++] = ' ';
			memcpy(out + o, args, al);
			o += al;
			changed++;
		}
		memcpy(out + o, line + end, ll - end);
		o += ll - end;
		if (nl)
			out[o++] = '\n';
		i += ll + (nl ? 1 : 0);
	}
	out[o] = '\0';
	*ret = out;
	*ret_changed = changed;
	return 0;
}

static const char *const loader_configs[] = {
	"boot/extlinux/extlinux.conf",
	"extlinux/extlinux.conf",
	"boot/syslinux/syslinux.cfg",
	"syslinux/syslinux.cfg",
};

/* The kernel arguments into GRUB's defaults (and update-grub) and every
 * extlinux/syslinux APPEND line. */
static int kernel_args(int rootfd, const char *root, const struct agent_postinst *pi,
                       const struct agent_var *vars, size_t n, char *acct, size_t acctlen,
                       char *err, size_t errlen)
{
	unsigned files = 0, lines = 0;
	bool grub = false;
	struct stat st;
	int e;

	e = put(rootfd, "grub-rackboot.cfg", vars, n, "etc/default/grub.d/rackboot.cfg", 0644, err,
	        errlen);
	if (e < 0)
		return e;
	if (fstatat(rootfd, "boot/grub/grub.cfg", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    fstatat(rootfd, "usr/sbin/update-grub", &st, AT_SYMLINK_NOFOLLOW) == 0) {
		static const char script[] = "exec /usr/sbin/update-grub\n";
		char out[1024];
		int status = 0, tfd;
		bool timed_out = false;

		tfd = agent_mkdir_beneath(rootfd, "var/lib/rackboot/tmp");
		if (tfd < 0)
			return agent_errf(err, errlen, tfd, "%s/var/lib/rackboot/tmp: %s", root,
			                  strerror(-tfd));
		close(tfd);
		e = agent_write_beneath(rootfd, "var/lib/rackboot/tmp/update-grub.sh", script,
		                        strlen(script), 0700, err, errlen);
		if (e == 0)
			e = agent_chroot_sh(rootfd, "/var/lib/rackboot/tmp/update-grub.sh",
			                    "configure", NULL,
			                    pi->script_timeout_s ? pi->script_timeout_s : 300,
			                    &status, &timed_out, out, sizeof(out));
		unlinkat(rootfd, "var/lib/rackboot/tmp/update-grub.sh", 0);
		if (e < 0)
			return e == -EINVAL ? e
			                    : agent_errf(err, errlen, e, "update-grub: %s",
			                                 strerror(-e));
		if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			return agent_errf(
			        err, errlen, -ECHILD,
			        "kernel_args: the target's update-grub failed (%s); output: %s",
			        timed_out ? "over its time limit" : "non-zero exit", out);
		grub = true;
	}
	for (size_t i = 0; i < RB_ARRAY_SIZE(loader_configs); i++) {
		char *text = NULL, *out = NULL;
		size_t len;
		unsigned changed = 0;

		e = read_beneath(rootfd, loader_configs[i], CONFIG_MAX, &text, &len);
		if (e == -ENOENT || e == -ENOTDIR)
			continue;
		if (e < 0)
			return agent_errf(err, errlen, e, "%s/%s: %s", root, loader_configs[i],
			                  strerror(-e));
		e = agent_append_lines(text, len, pi->kernel_args, &out, &changed);
		free(text);
		if (e == 0 && changed)
			e = agent_write_beneath(rootfd, loader_configs[i], out, strlen(out), 0644,
			                        err, errlen);
		free(out);
		if (e < 0)
			return e;
		files += changed ? 1 : 0;
		lines += changed;
	}
	snprintf(acct, acctlen, "kernel args in grub.d%s, %u APPEND line(s) in %u file(s)",
	         grub ? " (update-grub ran)" : "", lines, files);
	return 0;
}

/* The agent binary and the trusted keys. */
static int install_agent(int rootfd, const char *root, const struct agent_postinst *pi,
                         unsigned *ret_keys, char *err, size_t errlen)
{
	struct dirent *de;
	char *bin = NULL;
	size_t len;
	DIR *d;
	int fd, e;

	*ret_keys = 0;
	if (pi->self) {
		struct stat st;

		fd = open(pi->self, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > BIN_MAX) {
			e = fd < 0 ? -errno : -EINVAL;
			if (fd >= 0)
				close(fd);
			return agent_errf(err, errlen, e, "the agent binary %s: %s", pi->self,
			                  strerror(-e));
		}
		len = (size_t)st.st_size;
		bin = malloc(len ? len : 1);
		e = bin ? (len ? rb_pread_all(fd, bin, len, 0) : 0) : -ENOMEM;
		close(fd);
		if (e == 0)
			e = agent_write_beneath(rootfd, "usr/sbin/rackboot-agent", bin, len, 0755,
			                        err, errlen);
		else
			agent_errf(err, errlen, e, "reading %s: %s", pi->self, strerror(-e));
		free(bin);
		if (e < 0)
			return e;
	}
	if (!pi->pubdir)
		return 0;
	d = opendir(pi->pubdir);
	if (!d)
		return agent_errf(err, errlen, -errno, "%s: %s", pi->pubdir, strerror(errno));
	e = 0;
	while (e == 0 && (de = readdir(d))) {
		size_t n = strlen(de->d_name);
		char src[4200], dst[400], *data = NULL;
		int sfd;

		if (de->d_name[0] == '.' || n < 5 || strcmp(de->d_name + n - 4, ".pub") || n > 200)
			continue;
		snprintf(src, sizeof(src), "%s/%s", pi->pubdir, de->d_name);
		snprintf(dst, sizeof(dst), "etc/rackboot/trusted/%s", de->d_name);
		sfd = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (sfd < 0) {
			e = agent_errf(err, errlen, -errno, "%s: %s", src, strerror(errno));
			break;
		}
		data = malloc(4096);
		len = 0;
		if (data) {
			ssize_t k;

			while (len < 4096 && (k = read(sfd, data + len, 4096 - len)) > 0)
				len += (size_t)k;
		}
		close(sfd);
		e = data ? agent_write_beneath(rootfd, dst, data, len, 0644, err, errlen) : -ENOMEM;
		free(data);
		if (e == 0)
			(*ret_keys)++;
	}
	closedir(d);
	(void)root;
	return e;
}

/* Whether path below rootfd is there with that type (no symlink followed). */
static bool exists(int rootfd, const char *path, mode_t type)
{
	struct stat st;

	return fstatat(rootfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       (st.st_mode & S_IFMT) == type;
}

/* The agent as a service: systemd unit (enabled), init script (+ rc links). */
static int install_service(int rootfd, const struct agent_var *vars, size_t n, char *err,
                           size_t errlen)
{
	static const char *const rc[] = { "etc/rc2.d", "etc/rc3.d", "etc/rc4.d", "etc/rc5.d" };
	int e;

	if ((e = put(rootfd, "rackboot-agent.service", vars, n,
	             "etc/systemd/system/rackboot-agent.service", 0644, err, errlen)) < 0 ||
	    (e = link_beneath(rootfd, "etc/systemd/system/multi-user.target.wants",
	                      "rackboot-agent.service",
	                      "/etc/systemd/system/rackboot-agent.service", err, errlen)) < 0 ||
	    (e = put(rootfd, "rackboot-agent.init", vars, n, "etc/init.d/rackboot-agent", 0755, err,
	             errlen)) < 0)
		return e;
	for (size_t i = 0; i < RB_ARRAY_SIZE(rc); i++)
		if (exists(rootfd, rc[i], S_IFDIR) &&
		    (e = link_beneath(rootfd, rc[i], "S99rackboot-agent",
		                      "../init.d/rackboot-agent", err, errlen)) < 0)
			return e;
	return 0;
}

/* network = "dhcp": the boot NIC, by its MAC, in the image's own network
 * configuration system. how says which (or that there was none). */
static int network(int rootfd, const struct agent_var *vars, size_t n, char *how, size_t howlen,
                   char *err, size_t errlen)
{
	static const char *const networkd[] = { "lib/systemd/systemd-networkd",
		                                "usr/lib/systemd/systemd-networkd" };
	char *text = NULL, *out = NULL;
	size_t len = 0;
	int e;

	if (exists(rootfd, "etc/netplan", S_IFDIR)) {
		snprintf(how, howlen, "network: netplan, boot NIC by DHCP");
		return put(rootfd, "netplan-boot.yaml", vars, n, "etc/netplan/60-rackboot.yaml",
		           0600, err, errlen);
	}
	if (exists(rootfd, "etc/network/interfaces", S_IFREG)) {
		if ((e = put(rootfd, "rackboot-boot.link", vars, n,
		             "etc/systemd/network/10-rackboot-boot.link", 0644, err, errlen)) < 0 ||
		    (e = put(rootfd, "interfaces-boot0", vars, n,
		             "etc/network/interfaces.d/rackboot-boot0", 0644, err, errlen)) < 0)
			return e;
		e = read_beneath(rootfd, "etc/network/interfaces", CONFIG_MAX, &text, &len);
		if (e < 0)
			return agent_errf(err, errlen, e, "etc/network/interfaces: %s",
			                  strerror(-e));
		/* Debian's default sources interfaces.d; an older one may not */
		if (!memmem(text, len, "interfaces.d", 12)) {
			out = malloc(len + 64);
			if (!out) {
				free(text);
				return -ENOMEM;
			}
			memcpy(out, text, len);
			snprintf(out + len, 64, "%ssource /etc/network/interfaces.d/*\n",
			         len && text[len - 1] != '\n' ? "\n" : "");
			e = agent_write_beneath(rootfd, "etc/network/interfaces", out, strlen(out),
			                        0644, err, errlen);
		}
		free(text);
		free(out);
		snprintf(how, howlen, "network: ifupdown, boot NIC named boot0, by DHCP");
		return e;
	}
	for (size_t i = 0; i < RB_ARRAY_SIZE(networkd); i++)
		if (exists(rootfd, networkd[i], S_IFREG)) {
			snprintf(how, howlen, "network: systemd-networkd, boot NIC by DHCP");
			if ((e = put(rootfd, "rackboot-boot.network", vars, n,
			             "etc/systemd/network/10-rackboot-boot.network", 0644, err,
			             errlen)) < 0)
				return e;
			return link_beneath(rootfd, "etc/systemd/system/multi-user.target.wants",
			                    "systemd-networkd.service",
			                    "/lib/systemd/system/systemd-networkd.service", err,
			                    errlen);
		}
	snprintf(how, howlen,
	         "network: the image has no netplan, ifupdown or systemd-networkd: its own "
	         "config left as it is");
	return 0;
}

int agent_postinst_apply(int rootfd, const char *root, const struct agent_postinst *pi,
                         char *report, size_t replen, char *err, size_t errlen)
{
	char short_host[64] = "", karg[160] = "no kernel args", *keys = NULL;
	char interval[16], jit[16], net[128] = "network: the image's";
	size_t klen = 0;
	unsigned n_pub = 0;
	int e = 0;

	snprintf(short_host, sizeof(short_host), "%.*s", (int)strcspn(pi->hostname, "."),
	         pi->hostname);
	for (size_t i = 0; i < pi->n_ssh_keys; i++)
		klen += strlen(pi->ssh_keys[i]) + 1;
	keys = calloc(1, klen + 1);
	if (!keys)
		return -ENOMEM;
	for (size_t i = 0; i < pi->n_ssh_keys; i++) {
		size_t o = strlen(keys);

		snprintf(keys + o, klen + 1 - o, "%s%s", i ? "\n" : "", pi->ssh_keys[i]);
	}
	snprintf(interval, sizeof(interval), "%u", pi->interval_s ? pi->interval_s : 300);
	snprintf(jit, sizeof(jit), "%u", pi->interval_s ? pi->jitter_s : 60);
	const struct agent_var vars[] = {
		{ "hostname", pi->hostname },
		{ "short_hostname", short_host },
		{ "profile", pi->profile ? pi->profile : "" },
		{ "ssh_keys", keys },
		{ "kernel_args", pi->kernel_args },
		{ "server", pi->server },
		{ "mac", pi->mac },
		{ "token", pi->token },
		{ "repo", pi->repo },
		{ "repo_hosts", pi->repo_hosts ? pi->repo_hosts : "" },
		{ "image", pi->image },
		{ "image_version", pi->image_version },
		{ "interval_s", interval },
		{ "jitter_s", jit },
	};
	size_t nv = RB_ARRAY_SIZE(vars);

	if (*pi->hostname &&
	    ((e = put(rootfd, "hostname", vars, nv, "etc/hostname", 0644, err, errlen)) < 0 ||
	     (e = put(rootfd, "hosts", vars, nv, "etc/hosts", 0644, err, errlen)) < 0))
		goto out;
	if (pi->n_ssh_keys) {
		int dfd = agent_mkdir_beneath(rootfd, "root/.ssh");

		if (dfd < 0 || fchmod(dfd, 0700) < 0 || fchown(dfd, 0, 0) < 0) {
			e = agent_errf(err, errlen, dfd < 0 ? dfd : -errno, "%s/root/.ssh: %s",
			               root, strerror(dfd < 0 ? -dfd : errno));
			if (dfd >= 0)
				close(dfd);
			goto out;
		}
		close(dfd);
		if ((e = put(rootfd, "authorized_keys", vars, nv, "root/.ssh/authorized_keys", 0600,
		             err, errlen)) < 0)
			goto out;
	}
	if (*pi->kernel_args &&
	    (e = kernel_args(rootfd, root, pi, vars, nv, karg, sizeof(karg), err, errlen)) < 0)
		goto out;
	if (pi->network_dhcp && (e = network(rootfd, vars, nv, net, sizeof(net), err, errlen)) < 0)
		goto out;
	if ((e = put(rootfd, "agent.conf", vars, nv, "etc/rackboot/agent.conf", 0600, err,
	             errlen)) < 0 ||
	    (e = install_agent(rootfd, root, pi, &n_pub, err, errlen)) < 0 ||
	    (e = install_service(rootfd, vars, nv, err, errlen)) < 0)
		goto out;
	snprintf(report, replen,
	         "hostname %s, %zu SSH key(s), %s, %s, agent%s with %u trusted key(s) and its "
	         "service",
	         *pi->hostname ? pi->hostname : "(image's)", pi->n_ssh_keys, karg, net,
	         pi->self ? " binary" : " config", n_pub);
out:
	free(keys);
	return e;
}
