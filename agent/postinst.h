/* Stage 2's post-install settings written into a target root: host name,
 * /etc/hosts, root's SSH keys, kernel arguments in the boot configs, the
 * installed agent (binary, trusted keys, agent.conf, systemd unit and init
 * script), from templates built into the agent (templates/postinstall/).
 * See agent/postinst.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct agent_var {
	const char *name;
	const char *value;
};

/* Renders tmpl (len bytes): each {{name}} is replaced by its variable's
 * value. 0 with a malloc'ed NUL-terminated *ret, -ENOENT naming an unknown
 * placeholder, -EINVAL for an unclosed one, -ENOMEM. */
int agent_render(const char *tmpl, size_t len, const struct agent_var *vars, size_t n_vars,
                 char **ret, char *err, size_t errlen);

/* The embedded template of that name (templates/postinstall/NAME), NULL if
 * none. */
const char *agent_postinst_template(const char *name, size_t *ret_len);

/* Writes len bytes to path (relative) below rootfd: parents created 0755
 * where missing, never through a symlink; a temporary file beside it,
 * mode, owner root, fsync, rename. 0 or -errno with a reason in err. */
int agent_write_beneath(int rootfd, const char *path, const void *data, size_t len, mode_t mode,
                        char *err, size_t errlen);

/* Appends args to every APPEND line of an extlinux/syslinux config (text,
 * len bytes) that does not end with them already. 0 with a malloc'ed
 * *ret and the number of lines changed, or -ENOMEM. */
int agent_append_lines(const char *text, size_t len, const char *args, char **ret,
                       unsigned *ret_changed);

struct agent_postinst {
	const char *profile;
	const char *hostname; /* "" = leave /etc/hostname and /etc/hosts */
	char *const *ssh_keys;
	size_t n_ssh_keys;
	const char *kernel_args; /* "" = none */
	/* agent.conf */
	const char *server, *mac, *token, *repo, *image, *image_version;
	const char *repo_hosts;        /* "host[:port]" entries, space-separated; NULL = none */
	unsigned interval_s, jitter_s; /* the update poll; 0 and 0 = 300 and 60 */
	bool network_dhcp;             /* the boot NIC (mac) configured for DHCP */
	const char *self;   /* the agent binary copied to usr/sbin/rackboot-agent; NULL: skip */
	const char *pubdir; /* *.pub copied to etc/rackboot/trusted; NULL: skip */
	unsigned script_timeout_s; /* update-grub's limit */
};

/* Writes every setting into the root (rootfd, named root in messages) and
 * runs the target's update-grub chrooted when it has one and kernel
 * arguments were given. A one-line account in report. 0 or -errno with a
 * reason in err naming the file. */
int agent_postinst_apply(int rootfd, const char *root, const struct agent_postinst *pi,
                         char *report, size_t replen, char *err, size_t errlen);
