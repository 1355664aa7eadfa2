/* nodecfg: checkers for the stage-2 values a profile gives a node (see
 * nodecfg.h). rackbootd checks them when it loads its config and again
 * when it expands a host name for a plan; the agent checks what the plan
 * says before it writes any of it into a target root, because these end
 * up in shell-sourced files (/etc/default/grub.d), boot loader configs and
 * authorized_keys. Owns nothing; never allocates. */
#include "common/nodecfg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/catalog.h"

int rb_pkg_want_parse(const char *s, char ret_name[65], char ret_version[65])
{
	const char *eq = strchr(s, '=');
	size_t n = eq ? (size_t)(eq - s) : strlen(s);
	char name[65];

	if (n == 0 || n >= sizeof(name))
		return -EINVAL;
	memcpy(name, s, n);
	name[n] = '\0';
	if (!img_name_is_valid(name) || (eq && !img_pkg_version_is_valid(eq + 1)))
		return -EINVAL;
	memcpy(ret_name, name, n + 1);
	snprintf(ret_version, 65, "%s", eq ? eq + 1 : "");
	return 0;
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool rb_hostname_ok(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > RB_HOSTNAME_MAX)
		return false;
	for (size_t i = 0; i <= n; i++) {
		char c = s[i];

		if (c == '.' || c == '\0') {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!is_alnum(c) && c != '-')
			return false;
		if (label == 0 && c == '-')
			return false;
		label++;
	}
	return true;
}

/* Expands into out; {ip} with ip "" gives "" (the caller decides). */
static int expand(const char *p, const char *machex, const char *ipdash, char *out, size_t outlen,
                  bool *ret_used_ip)
{
	size_t o = 0;

	*ret_used_ip = false;
	while (*p) {
		const char *val = NULL;
		size_t skip = 1, k;

		if (!strncmp(p, "{mac}", 5)) {
			val = machex;
			skip = 5;
		} else if (!strncmp(p, "{ip}", 4)) {
			val = ipdash;
			skip = 4;
			*ret_used_ip = true;
		} else if (*p == '{' || *p == '}') {
			return -EINVAL;
		}
		k = val ? strlen(val) : 1;
		if (o + k >= outlen)
			return -ENAMETOOLONG;
		memcpy(out + o, val ? val : p, k);
		o += k;
		p += skip;
	}
	out[o] = '\0';
	return 0;
}

bool rb_hostname_pattern_ok(const char *s)
{
	char out[RB_HOSTNAME_MAX + 2];
	bool ip;

	if (!*s)
		return true;
	/* the longest forms: an address of 15 characters */
	return expand(s, "0123456789ab", "255-255-255-255", out, sizeof(out), &ip) == 0 &&
	       rb_hostname_ok(out) &&
	       expand(s, "0123456789ab", "1-1-1-1", out, sizeof(out), &ip) == 0 &&
	       rb_hostname_ok(out);
}

int rb_hostname_expand(const char *pattern, const uint8_t mac[6], const char *ip, char *ret,
                       size_t retlen)
{
	char machex[13], ipdash[16] = "";
	bool used_ip;
	int r;

	snprintf(machex, sizeof(machex), "%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2], mac[3],
	         mac[4], mac[5]);
	if (ip && *ip) {
		size_t n = strlen(ip);

		if (n >= sizeof(ipdash))
			return -EINVAL;
		for (size_t i = 0; i <= n; i++)
			ipdash[i] = ip[i] == '.' ? '-' : ip[i];
	}
	r = expand(pattern, machex, ipdash, ret, retlen, &used_ip);
	if (r < 0)
		return r;
	if (used_ip && !ipdash[0])
		return -ENOENT;
	if (*ret && !rb_hostname_ok(ret))
		return -EINVAL;
	return 0;
}

bool rb_ssh_key_ok(const char *s)
{
	static const char *const types[] = {
		"ssh-ed25519",
		"ssh-rsa",
		"ecdsa-sha2-nistp256",
		"ecdsa-sha2-nistp384",
		"ecdsa-sha2-nistp521",
		"sk-ssh-ed25519@openssh.com",
		"sk-ecdsa-sha2-nistp256@openssh.com",
	};
	const char *sp = strchr(s, ' '), *b64, *end;
	bool known = false;

	if (!sp || strlen(s) > RB_SSH_KEY_MAX)
		return false;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		known = known || (strlen(types[i]) == (size_t)(sp - s) &&
		                  !strncmp(s, types[i], (size_t)(sp - s)));
	if (!known)
		return false;
	b64 = sp + 1;
	end = strchr(b64, ' ');
	if (!end)
		end = b64 + strlen(b64);
	if (end - b64 < 16)
		return false;
	for (const char *c = b64; c < end; c++)
		if (!is_alnum(*c) && *c != '+' && *c != '/' && *c != '=')
			return false;
	for (const char *c = end; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e || *c == '"' || *c == '\\')
			return false;
	return true;
}

bool rb_kernel_args_ok(const char *s)
{
	size_t n = strlen(s);

	if (n > RB_KERNEL_ARGS_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == ' ') {
			if (i == 0 || i + 1 == n || s[i + 1] == ' ')
				return false;
			continue;
		}
		if (!is_alnum(c) && !strchr("._,:/+=@%-", c))
			return false;
	}
	return true;
}
