/* efivars: makes the next boot of a UEFI node a network boot, natively.
 *
 * The installed agent must reboot a node into rackbootd for a reimage. A
 * UEFI firmware boots BootNext once, before BootOrder, so the agent sets
 * BootNext to the firmware's network entry for the node's NIC, the way
 * efibootmgr -n does, but without efibootmgr (a minimal installed system
 * has none): through efivarfs, where each variable is a file whose first
 * 4 bytes are its attributes and the rest its data.
 *
 * Parsing (agent_efi_load_option_parse, agent_efi_choose_netboot) is pure:
 * a Boot#### variable is firmware data the agent did not write and may be
 * garbage, so it is read from a cursor with the remaining length checked
 * before every read, every device path node's length checked, and the
 * walk bounded by the variable (each node is at least 4 bytes). The I/O
 * part owns the efivarfs directory fd it opens and a read-write remount it
 * made (undone in agent_efivars_free).
 *
 * Never writes a variable other than BootNext; never deletes one; never
 * picks an entry whose device path names another NIC (a boot through it
 * would reach rackbootd as an unknown node). */
#include "agent/efivars.h"

#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/util.h"

#define EFIVARFS_MAGIC_NUMBER 0xde5e81e4
#define GUID_SUFFIX           "-" AGENT_EFI_GLOBAL_GUID

/* ---- device paths ---------------------------------------------------------------------- */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Appends to a fixed buffer; a cut shows as "...". */
struct sbuf {
	char *p;
	size_t cap, len;
	bool cut;
};

static void sb_add(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(struct sbuf *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (s->cut)
		return;
	va_start(ap, fmt);
	n = vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= s->cap - s->len) {
		s->cut = true;
		s->len = s->cap - 1;
		if (s->cap >= 4)
			memcpy(s->p + s->cap - 4, "...", 4);
		return;
	}
	s->len += (size_t)n;
}

/* UTF-16LE text of n bytes (no terminator needed) as printable ASCII. */
static void sb_utf16(struct sbuf *s, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2) {
		uint16_t c = le16(p + i);

		if (c == 0)
			break;
		sb_add(s, "%c", c >= 0x20 && c < 0x7f ? (char)c : '?');
	}
}

static void sb_guid(struct sbuf *s, const uint8_t *g)
{
	sb_add(s, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", le32(g), le16(g + 4),
	       le16(g + 6), g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
}

/* Known nodes: the size they must have (min == max) or at least. */
struct node_kind {
	uint8_t type, subtype;
	uint16_t min, max;
	const char *name;
};

static const struct node_kind node_kinds[] = {
	{ 1, 1, 6, 6, "Pci" },       { 2, 1, 12, 12, "Acpi" },    { 3, 11, 37, 37, "MAC" },
	{ 3, 12, 19, 27, "IPv4" }, /* 19: before UEFI 2.4 */
	{ 3, 13, 43, 60, "IPv6" },   { 3, 24, 4, 0xffff, "Uri" }, { 4, 1, 42, 42, "HD" },
	{ 4, 4, 6, 0xffff, "File" }, { 4, 6, 20, 20, "FvFile" },  { 4, 7, 20, 20, "Fv" },
	{ 3, 18, 10, 10, "Sata" },   { 3, 2, 8, 8, "Scsi" },      { 0x7f, 0xff, 4, 4, "End" },
	{ 0x7f, 0x01, 4, 4, "End" },
};

static const struct node_kind *node_kind(uint8_t type, uint8_t subtype)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(node_kinds); i++)
		if (node_kinds[i].type == type && node_kinds[i].subtype == subtype)
			return &node_kinds[i];
	return NULL;
}

/* One node (length already checked) as text. */
static void node_text(struct sbuf *s, const uint8_t *n, uint16_t len)
{
	uint8_t type = n[0], sub = n[1];

	if (type == 1 && sub == 1) {
		sb_add(s, "Pci(0x%x,0x%x)", n[5], n[4]);
	} else if (type == 2 && sub == 1) {
		uint32_t hid = le32(n + 4), uid = le32(n + 8);

		if (hid == 0x0a0341d0)
			sb_add(s, "PciRoot(0x%x)", uid);
		else if (hid == 0x0a0841d0)
			sb_add(s, "PcieRoot(0x%x)", uid);
		else
			sb_add(s, "Acpi(0x%08x,0x%x)", hid, uid);
	} else if (type == 3 && sub == 11) {
		sb_add(s, "MAC(%02x%02x%02x%02x%02x%02x,0x%x)", n[4], n[5], n[6], n[7], n[8], n[9],
		       n[36]);
	} else if (type == 3 && sub == 12) {
		sb_add(s, "IPv4(%u.%u.%u.%u)", n[8], n[9], n[10], n[11]);
	} else if (type == 3 && sub == 13) {
		sb_add(s, "IPv6()");
	} else if (type == 3 && sub == 24) {
		sb_add(s, "Uri(");
		for (uint16_t i = 4; i < len; i++)
			sb_add(s, "%c", n[i] >= 0x21 && n[i] < 0x7f ? (char)n[i] : '?');
		sb_add(s, ")");
	} else if (type == 3 && sub == 18) {
		sb_add(s, "Sata(0x%x,0x%x,0x%x)", le16(n + 4), le16(n + 6), le16(n + 8));
	} else if (type == 3 && sub == 2) {
		sb_add(s, "Scsi(0x%x,0x%x)", le16(n + 4), le16(n + 6));
	} else if (type == 4 && sub == 1) {
		sb_add(s, "HD(%u,", le32(n + 4));
		if (n[41] == 2)
			sb_guid(s, n + 24), sb_add(s, ",GPT)");
		else
			sb_add(s, "0x%08x,MBR)", le32(n + 24));
	} else if (type == 4 && sub == 4) {
		sb_add(s, "File(");
		sb_utf16(s, n + 4, len - 4u);
		sb_add(s, ")");
	} else if (type == 4 && (sub == 6 || sub == 7)) {
		sb_add(s, "%s(", sub == 6 ? "FvFile" : "Fv");
		sb_guid(s, n + 4);
		sb_add(s, ")");
	} else {
		sb_add(s, "Path(%u,%u)", type, sub);
	}
}

/* Walks the device path list p[0..len): every node's length within what
 * is left and right for its kind, each path ending with End Entire, the
 * last one exactly at len. The first path is summarised into o. */
static int devpath_parse(const uint8_t *p, size_t len, struct agent_efi_load_option *o, char *err,
                         size_t errlen)
{
	struct sbuf s = { o->path, sizeof(o->path), 0, false };
	size_t off = 0;
	bool first = true, ended = false;

	o->path[0] = '\0';
	while (off < len) {
		const struct node_kind *k;
		uint16_t nlen;
		uint8_t type, sub;

		if (len - off < 4)
			return rb_errf(err, errlen,
			               "device path: %zu stray bytes at offset %zu, a node "
			               "needs 4",
			               len - off, off);
		type = p[off];
		sub = p[off + 1];
		nlen = le16(p + off + 2);
		if (nlen < 4 || nlen > len - off)
			return rb_errf(err, errlen,
			               "device path: node %u/%u at offset %zu claims %u bytes, "
			               "%zu left",
			               type, sub, off, nlen, len - off);
		k = node_kind(type, sub);
		if (k && (nlen < k->min || nlen > k->max))
			return rb_errf(err, errlen,
			               "device path: %s node at offset %zu is %u bytes, must be "
			               "%u%s",
			               k->name, off, nlen, k->min,
			               k->max != k->min ? " or more" : "");
		if (type == 0x7f && sub == 0xff) {
			ended = true;
			first = false;
		} else {
			ended = false;
			if (first && type == 0x7f) {
				sb_add(&s, ",");
			} else if (first) {
				if (s.len)
					sb_add(&s, "/");
				node_text(&s, p + off, nlen);
				if (type == 3 && sub == 11 && !o->has_mac) {
					o->has_mac = true;
					memcpy(o->mac, p + off + 4, 6);
				}
				o->ipv4 |= type == 3 && sub == 12;
				o->ipv6 |= type == 3 && sub == 13;
				o->uri |= type == 3 && sub == 24;
			}
		}
		off += nlen;
	}
	if (!ended)
		return rb_errf(err, errlen, "device path: no End node at its end (%zu bytes)", len);
	return 0;
}

int agent_efi_load_option_parse(const uint8_t *data, size_t len, struct agent_efi_load_option *ret,
                                char *err, size_t errlen)
{
	struct agent_efi_load_option o;
	struct sbuf s = { o.description, sizeof(o.description), 0, false };
	size_t off = 6, dend;
	uint16_t fpl;
	int e;

	memset(&o, 0, sizeof(o));
	if (!data || len < 6)
		return rb_errf(err, errlen,
		               "load option of %zu bytes: truncated (attributes and "
		               "FilePathListLength need 6)",
		               len);
	if (len > AGENT_EFI_VAR_MAX)
		return rb_errf(err, errlen, "load option of %zu bytes: more than %d", len,
		               AGENT_EFI_VAR_MAX);
	o.attributes = le32(data);
	fpl = le16(data + 4);
	for (dend = off; dend + 1 < len && le16(data + dend) != 0; dend += 2)
		;
	if (dend + 1 >= len)
		return rb_errf(err, errlen,
		               "load option: description not NUL-terminated within its %zu "
		               "bytes",
		               len);
	o.description[0] = '\0';
	sb_utf16(&s, data + off, dend - off);
	off = dend + 2;
	if (fpl < 4)
		return rb_errf(err, errlen, "load option: FilePathListLength %u, a path needs 4",
		               fpl);
	if (fpl > len - off)
		return rb_errf(err, errlen,
		               "load option: FilePathListLength %u but %zu bytes after the "
		               "description (truncated or overlong)",
		               fpl, len - off);
	e = devpath_parse(data + off, fpl, &o, err, errlen);
	if (e < 0)
		return e;
	*ret = o;
	return 0;
}

/* ---- the choice ------------------------------------------------------------------------ */

/* Does text name mac as 12 hex digits (separators ':' or '-' allowed)? */
static bool text_names_mac(const char *text, const uint8_t mac[6])
{
	char want[13];

	snprintf(want, sizeof(want), "%02x%02x%02x%02x%02x%02x", mac[0], mac[1], mac[2], mac[3],
	         mac[4], mac[5]);
	for (const char *t = text; *t; t++) {
		size_t got = 0;

		for (const char *q = t; *q && got < 12; q++) {
			if (got > 0 && got % 2 == 0 && (*q == ':' || *q == '-'))
				continue;
			if (tolower((unsigned char)*q) != want[got])
				break;
			got++;
		}
		if (got == 12)
			return true;
	}
	return false;
}

static bool says_network(const char *d)
{
	return strcasestr(d, "pxe") || strcasestr(d, "network") || strcasestr(d, "ipxe");
}

/* How well e fits, 0 not at all; reason in *why. */
static int rank(const struct agent_efi_load_option *o, const uint8_t mac[6], const char **why)
{
	if (o->attributes & 0x1f00u) /* LOAD_OPTION_CATEGORY_APP: not a boot entry */
		return 0;
	if (o->has_mac && memcmp(o->mac, mac, 6) != 0)
		return 0; /* another NIC */
	if (o->has_mac) {
		if (o->ipv4 && !o->uri)
			return *why = "PXE over IPv4: its device path has this node's MAC and an "
			              "IPv4 node",
			       60;
		if (!o->ipv4 && !o->ipv6 && !o->uri)
			return *why = "its device path ends at this node's MAC (the NIC's own "
			              "boot, no IPv4 PXE entry)",
			       50;
		if (o->ipv4)
			return *why = "HTTP boot over IPv4 (a URI node; no IPv4 PXE entry for "
			              "this MAC)",
			       40;
		if (!o->uri)
			return *why = "PXE over IPv6 (no IPv4 entry for this MAC)", 30;
		return *why = "HTTP boot over IPv6 (no IPv4 entry for this MAC)", 20;
	}
	if (says_network(o->description) && text_names_mac(o->description, mac))
		return *why = "its description says network boot for this node's MAC (no device "
		              "path with it)",
		       10;
	return 0;
}

int agent_efi_choose_netboot(const struct agent_efi_boot_entry *entries, size_t n,
                             const uint8_t mac[6], size_t *ret, char *why, size_t whylen)
{
	size_t best = n;
	int best_rank = 0;
	const char *best_why = NULL;

	for (size_t i = 0; i < n; i++) {
		const char *w = NULL;
		int r = rank(&entries[i].opt, mac, &w);

		if (r == 0)
			continue;
		if (entries[i].opt.attributes & AGENT_EFI_LOAD_OPTION_ACTIVE)
			r += 1000;
		if (r > best_rank) { /* entries come in BootOrder: ties keep the first */
			best = i;
			best_rank = r;
			best_why = w;
		}
	}
	if (best == n) {
		struct sbuf s = { why, whylen, 0, false };

		sb_add(&s, "no boot entry for MAC %02x:%02x:%02x:%02x:%02x:%02x among %zu", mac[0],
		       mac[1], mac[2], mac[3], mac[4], mac[5], n);
		for (size_t i = 0; i < n; i++)
			sb_add(&s, "%s Boot%04X %s", i ? "," : ":", entries[i].num,
			       entries[i].opt.description);
		return -ENOENT;
	}
	snprintf(why, whylen, "%s%s", best_why,
	         best_rank < 1000 ? "; inactive, but no active entry fits" : "");
	*ret = best;
	return 0;
}

/* ---- efivarfs --------------------------------------------------------------------------- */

struct agent_efivars {
	int dirfd;
	char path[256];
	bool remounted_rw; /* the system's, mounted read-only: made ro again on free */
};

void agent_efivars_free(struct agent_efivars *v)
{
	if (!v)
		return;
	if (v->remounted_rw &&
	    mount(NULL, v->path, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
	          NULL) < 0)
		(void)0; /* best effort: the variable is written either way */
	if (v->dirfd >= 0)
		close(v->dirfd);
	free(v);
}

/* The system's efivarfs: mounted where it is not, read-write for the
 * write (root may; efibootmgr would fail on a read-only mount). */
static int system_efivars(struct agent_efivars *v, char *err, size_t errlen)
{
	unsigned long fl = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	struct statfs sf;
	struct statvfs sv;

	if (access("/sys/firmware/efi", F_OK) < 0) {
		rb_errf(err, errlen,
		        "BIOS: the network boots first or the firmware's order "
		        "decides");
		return -EOPNOTSUPP;
	}
	if (statfs(AGENT_EFIVARS_DIR, &sf) < 0) {
		int e_ = -errno;

		rb_errf(err, errlen, "%s: %s", AGENT_EFIVARS_DIR, strerror(errno));
		return e_;
	}
	if ((unsigned long)sf.f_type != EFIVARFS_MAGIC_NUMBER &&
	    mount("efivarfs", AGENT_EFIVARS_DIR, "efivarfs", fl, NULL) < 0) {
		int e_ = -errno;

		rb_errf(err, errlen,
		        "mounting efivarfs on %s: %s (is the efivarfs module "
		        "available?)",
		        AGENT_EFIVARS_DIR, strerror(errno));
		return e_;
	}
	if (statvfs(AGENT_EFIVARS_DIR, &sv) == 0 && (sv.f_flag & ST_RDONLY)) {
		if (mount(NULL, AGENT_EFIVARS_DIR, NULL, MS_REMOUNT | fl, NULL) < 0) {
			int e_ = -errno;

			rb_errf(err, errlen,
			        "%s is mounted read-only and remounting it read-write "
			        "failed: %s",
			        AGENT_EFIVARS_DIR, strerror(errno));
			return e_;
		}
		v->remounted_rw = true;
	}
	return 0;
}

int agent_efivars_open(const char *dir, struct agent_efivars **ret, char *err, size_t errlen)
{
	struct agent_efivars *v = calloc(1, sizeof(*v));
	int e;

	if (!v) {
		rb_errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	v->dirfd = -1;
	snprintf(v->path, sizeof(v->path), "%s", dir ? dir : AGENT_EFIVARS_DIR);
	if (!dir) {
		e = system_efivars(v, err, errlen);
		if (e < 0)
			goto fail;
	}
	v->dirfd = open(v->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (v->dirfd < 0) {
		e = -errno;
		rb_errf(err, errlen, "%s: %s", v->path, strerror(errno));
		goto fail;
	}
	*ret = v;
	return 0;
fail:
	agent_efivars_free(v);
	return e;
}

int agent_efivars_read(struct agent_efivars *v, const char *name, uint32_t *ret_attrs,
                       uint8_t **ret_data, size_t *ret_len, char *err, size_t errlen)
{
	size_t cap = AGENT_EFI_VAR_MAX + 4 + 1, n = 0;
	uint8_t *buf;
	ssize_t k;
	int fd, e;

	fd = openat(v->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int e_ = -errno;

		rb_errf(err, errlen, "%s: %s", name, strerror(errno));
		return e_;
	}
	buf = malloc(cap);
	if (!buf) {
		close(fd);
		{
			rb_errf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	while (n < cap && ((k = read(fd, buf + n, cap - n)) > 0 || (k < 0 && errno == EINTR)))
		if (k > 0)
			n += (size_t)k;
	e = k < 0 ? -errno : 0;
	close(fd);
	if (e < 0) {
		rb_errf(err, errlen, "%s: %s", name, strerror(-e));
		goto fail;
	}
	if (n < 4 || n > AGENT_EFI_VAR_MAX + 4) {
		e = -EINVAL;
		rb_errf(err, errlen, "%s: %s (%zu bytes)", name,
		        n < 4 ? "shorter than its 4 attribute bytes"
		              : "too large for a boot variable",
		        n);
		goto fail;
	}
	*ret_attrs = le32(buf);
	memmove(buf, buf + 4, n - 4);
	*ret_data = buf;
	*ret_len = n - 4;
	return 0;
fail:
	free(buf);
	return e;
}

/* FS_IOC_GETFLAGS/SETFLAGS take an int (whatever the macro says). */
static int immutable_clear(int dirfd, const char *name, bool *ret_was)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), flags = 0, e = 0;

	*ret_was = false;
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0) {
		/* no such flags here (tmpfs in tests): nothing to clear */
		e = errno == ENOTTY || errno == EOPNOTSUPP || errno == EINVAL ? 0 : -errno;
	} else if (flags & FS_IMMUTABLE_FL) {
		flags &= ~FS_IMMUTABLE_FL;
		if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)
			e = -errno;
		else
			*ret_was = true;
	}
	close(fd);
	return e;
}

static void immutable_set(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), flags = 0;

	if (fd < 0)
		return;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
		flags |= FS_IMMUTABLE_FL;
		(void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
	}
	close(fd);
}

int agent_efivars_set_boot_next(struct agent_efivars *v, uint16_t num, char *err, size_t errlen)
{
	static const char name[] = "BootNext" GUID_SUFFIX;
	const uint8_t buf[6] = { AGENT_EFI_ATTRS_NV_BS_RT, 0, 0, 0, (uint8_t)(num & 0xff),
		                 (uint8_t)(num >> 8) };
	uint8_t *back = NULL;
	size_t backlen = 0;
	uint32_t attrs = 0;
	bool was_immutable;
	ssize_t k;
	int fd, e;

	e = immutable_clear(v->dirfd, name, &was_immutable);
	if (e < 0) {
		rb_errf(err, errlen, "clearing the immutable flag of %s/%s: %s", v->path, name,
		        strerror(-e));
		return e;
	}
	fd = openat(v->dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		e = -errno;
		rb_errf(err, errlen, "%s/%s: %s", v->path, name, strerror(errno));
		goto out;
	}
	/* efivarfs takes a variable in one write: never split it */
	do
		k = write(fd, buf, sizeof(buf));
	while (k < 0 && errno == EINTR);
	e = k < 0 ? -errno : k != (ssize_t)sizeof(buf) ? -EIO : 0;
	if (close(fd) < 0 && e == 0)
		e = -errno;
	if (e < 0) {
		rb_errf(err, errlen, "writing %s/%s: %s (the firmware refused the variable?)",
		        v->path, name, k >= 0 ? "short write" : strerror(-e));
		goto out;
	}
	e = agent_efivars_read(v, name, &attrs, &back, &backlen, err, errlen);
	if (e == 0 && (attrs != AGENT_EFI_ATTRS_NV_BS_RT || backlen != 2 || le16(back) != num)) {
		e = -EIO;
		rb_errf(err, errlen,
		        "%s/%s reads back as %zu bytes with attributes 0x%x, not Boot%04X", v->path,
		        name, backlen, attrs, num);
	}
	free(back);
out:
	if (was_immutable)
		immutable_set(v->dirfd, name);
	return e;
}

/* "Boot" + 4 upper-case hex digits + the global GUID: the firmware looks
 * for exactly that name (Boot%04X), so a lower-case one is not an entry. */
static int boot_num(const char *name)
{
	long n = 0;

	if (strncmp(name, "Boot", 4) != 0 || strcmp(name + 8, GUID_SUFFIX) != 0)
		return -1;
	for (int i = 4; i < 8; i++) {
		char c = name[i];

		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
			return -1;
		n = n * 16 + (c <= '9' ? c - '0' : c - 'A' + 10);
	}
	return (int)n;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct agent_efi_boot_entry *x = a, *y = b;
	long kx = x->order >= 0 ? x->order : 0x10000L + x->num;
	long ky = y->order >= 0 ? y->order : 0x10000L + y->num;

	return (kx > ky) - (kx < ky);
}

int agent_efivars_boot_entries(struct agent_efivars *v, struct agent_efi_boot_entry **ret,
                               size_t *ret_n, char *skipped, size_t skippedlen, char *err,
                               size_t errlen)
{
	struct sbuf sk = { skipped, skippedlen, 0, false };
	struct agent_efi_boot_entry *list = NULL;
	uint8_t *order = NULL;
	size_t orderlen = 0, n = 0;
	uint32_t attrs;
	struct dirent *de;
	DIR *d = NULL;
	int dfd, e;

	if (skipped && skippedlen)
		skipped[0] = '\0';
	e = agent_efivars_read(v, "BootOrder" GUID_SUFFIX, &attrs, &order, &orderlen, err, errlen);
	if (e == -ENOENT) {
		orderlen = 0;
	} else if (e < 0) {
		return e;
	} else if (orderlen % 2) {
		free(order);
		{
			rb_errf(err, errlen, "BootOrder: %zu bytes, not a list of 16-bit numbers",
			        orderlen);
			return -EINVAL;
		}
	}
	list = calloc(AGENT_EFI_BOOT_ENTRIES_MAX, sizeof(*list));
	dfd = dup(v->dirfd);
	if (!list || dfd < 0 || !(d = fdopendir(dfd))) {
		e = list ? -errno : -ENOMEM;
		if (dfd >= 0 && !d)
			close(dfd);
		rb_errf(err, errlen, "%s: %s", v->path, strerror(-e));
		goto fail;
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		int num = boot_num(de->d_name);
		uint8_t *data = NULL;
		size_t len = 0;
		char why[256];

		if (num < 0)
			continue;
		if (n == AGENT_EFI_BOOT_ENTRIES_MAX) {
			sb_add(&sk, "%smore than %d Boot#### variables: the rest not read",
			       sk.len ? "; " : "", AGENT_EFI_BOOT_ENTRIES_MAX);
			break;
		}
		e = agent_efivars_read(v, de->d_name, &attrs, &data, &len, why, sizeof(why));
		if (e == 0)
			e = agent_efi_load_option_parse(data, len, &list[n].opt, why, sizeof(why));
		free(data);
		if (e < 0) {
			sb_add(&sk, "%sBoot%04X: %s", sk.len ? "; " : "", num, why);
			continue;
		}
		list[n].num = (uint16_t)num;
		list[n].order = -1;
		for (size_t i = 0; i + 1 < orderlen; i += 2)
			if (le16(order + i) == num) {
				list[n].order = (int)(i / 2);
				break;
			}
		n++;
	}
	closedir(d);
	free(order);
	qsort(list, n, sizeof(*list), entry_cmp);
	*ret = list;
	*ret_n = n;
	return 0;
fail:
	free(order);
	free(list);
	return e;
}

int agent_efi_netboot_next(const char *dir, const uint8_t mac[6], bool dry_run, char *msg,
                           size_t msglen)
{
	struct agent_efivars *v = NULL;
	struct agent_efi_boot_entry *list = NULL;
	char err[512], skipped[512], why[512];
	size_t n = 0, pick = 0;
	int e;

	e = agent_efivars_open(dir, &v, err, sizeof(err));
	if (e < 0) {
		snprintf(msg, msglen, "%s", err);
		return e;
	}
	e = agent_efivars_boot_entries(v, &list, &n, skipped, sizeof(skipped), err, sizeof(err));
	if (e < 0) {
		snprintf(msg, msglen, "reading the boot entries: %s", err);
		goto out;
	}
	e = agent_efi_choose_netboot(list, n, mac, &pick, why, sizeof(why));
	if (e < 0) {
		snprintf(msg, msglen, "%s%s%s", why, skipped[0] ? "; skipped " : "", skipped);
		goto out;
	}
	if (!dry_run) {
		e = agent_efivars_set_boot_next(v, list[pick].num, err, sizeof(err));
		if (e < 0) {
			snprintf(msg, msglen, "Boot%04X (%s) chosen, but BootNext not set: %s",
			         list[pick].num, list[pick].opt.description, err);
			goto out;
		}
	}
	snprintf(msg, msglen, "BootNext = Boot%04X (%s), %s efivarfs (%s; %s)", list[pick].num,
	         list[pick].opt.description, dry_run ? "not written (dry run) to" : "written to",
	         why, list[pick].opt.path);
out:
	free(list);
	agent_efivars_free(v);
	return e;
}
