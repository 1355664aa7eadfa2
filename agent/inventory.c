/* Hardware inventory: what the node is, for the server's registry and for
 * the rules that pick a profile (issue 5).
 *
 * Reads only /proc and /sys below a root directory ("/" on a node, a fixture
 * tree in tests). Every file is opened with rb_open_beneath() (symlinks may
 * not leave the root; loops end in ELOOP), must be a regular file, and is read
 * with a hard cap: 4 KiB for a sysfs attribute, 4 MiB for /proc/cpuinfo. Every
 * number goes through a bounded parser; a value that is missing, unreadable or
 * malformed becomes null (or the entry is left out), never an error. Strings
 * are cut to INV_STR_MAX and anything but printable ASCII is written as \xNN,
 * so the document is always valid JSON. It owns nothing beyond the JSON
 * object it returns and must never write anywhere below the root.
 *
 * The document (keys in this order):
 *   {
 *     "version": 1,
 *     "uefi": bool,                      sys/firmware/efi exists
 *     "dmi": { "sys_vendor", "product_name", "product_serial", "board_serial",
 *              "bios_version": string|null },
 *     "cpu": { "model": string|null,     first "model name" of /proc/cpuinfo
 *              "sockets": int|null,      distinct "physical id"
 *              "cores": int|null,        distinct ("physical id", "core id")
 *              "threads": int|null },    "processor" entries
 *     "memory": { "total_bytes": int|null },           MemTotal
 *     "disks": [ { "name", "size_bytes": int|null, "model", "vendor",
 *                  "serial": string|null, "rotational", "removable": bool|null } ],
 *     "nics": [ { "name", "mac": string|null (aa:bb:..., 20 bytes on IB),
 *                 "type": "ethernet"|"infiniband"|"other"|null,
 *                 "speed_mbps": int|null (null when down or unknown),
 *                 "carrier": bool|null, "driver": string|null,
 *                 "bus_id": string|null (e.g. "0000:3b:00.0") } ],
 *     "pci": [ { "address", "vendor", "device", "class", "subsystem_vendor",
 *                "subsystem_device": "0x10de" / "0x030200" style string|null,
 *                "driver": string|null, "numa_node": int|null,
 *                "ib_device": string|null (e.g. "mlx5_0") } ],
 *     "gpus": [ pci entries with vendor 0x10de and class 0x0300xx/0x0302xx ],
 *     "ib_hcas": [ pci entries with class 0x0207xx, or vendor 0x15b3 and
 *                  class 0x0200xx/0x0207xx ],
 *     "counts": { "disks", "nics", "pci", "gpus", "ib_hcas": int }
 *   }
 * Lists are sorted by name: disks and NICs in version order (nvme2n1 before
 * nvme10n1), PCI devices by address.
 * Disks skip loop, ram, zram, dm-* and sr unless AGENT_INV_ALL_DISKS; NICs
 * skip lo and every interface without a device link (bridges, bonds, veth). */
#include "agent/inventory.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "common/log.h"
#include "common/util.h"

#define INV_ATTR_MAX     4096              /* sysfs attributes are at most a page */
#define INV_PROC_MAX     (4u << 20)        /* /proc/cpuinfo of a very large host */
#define INV_STR_MAX      256               /* longest string in the document */
#define INV_DIR_MAX      4096              /* entries read from one directory */
#define INV_CPU_MAX      16384             /* processors counted */
#define INV_SIZE_MAX_SEC (INT64_MAX / 512) /* sectors whose byte size fits */

struct slice {
	const char *p;
	size_t n;
};

/* ---- bounded reading below the root ---- */

/* Reads at most cap-1 bytes of the regular file path below rootfd into buf,
 * NUL-terminated. O_NONBLOCK so a FIFO planted in a tree cannot stall us. */
static int read_raw(int rootfd, const char *path, char *buf, size_t cap, size_t *ret_len)
{
	struct stat st;
	size_t len = 0;
	int fd, r = 0;

	fd = rb_open_beneath(rootfd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out;
	}
	while (len < cap - 1) {
		ssize_t n = read(fd, buf + len, cap - 1 - len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*ret_len = len;
out:
	close(fd);
	return r;
}

static struct slice trim(struct slice s)
{
	while (s.n && (s.p[0] == ' ' || s.p[0] == '\t' || s.p[0] == '\n' || s.p[0] == '\r'))
		s.p++, s.n--;
	while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t' || s.p[s.n - 1] == '\n' ||
	               s.p[s.n - 1] == '\r'))
		s.n--;
	return s;
}

/* A sysfs text attribute: its first line, trimmed. Empty counts as missing. */
static int read_attr(int rootfd, const char *path, char *buf, size_t cap, struct slice *ret)
{
	struct slice s;
	const char *nl;
	size_t len;
	int r;

	r = read_raw(rootfd, path, buf, cap, &len);
	if (r < 0)
		return r;
	/* text attributes hold no NUL: what follows one is junk */
	len = strnlen(buf, len);
	nl = memchr(buf, '\n', len);
	s = trim((struct slice){ buf, nl ? (size_t)(nl - buf) : len });
	if (s.n == 0)
		return -ENODATA;
	*ret = s;
	return 0;
}

__attribute__((format(printf, 3, 4))) static int pathf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* ---- JSON values from untrusted bytes ---- */

static json_t *json_text(struct slice s)
{
	char out[INV_STR_MAX + 1];

	rb_escape(out, sizeof(out), s.p, s.n);
	return json_string(out);
}

static int parse_dec(struct slice s, long long min, long long max, long long *ret)
{
	char num[32];

	if (s.n == 0 || s.n >= sizeof(num))
		return s.n ? -ERANGE : -EINVAL;
	if (memchr(s.p, '\0', s.n))
		return -EINVAL; /* "1\0junk" is not 1 */
	memcpy(num, s.p, s.n);
	num[s.n] = '\0';
	return rb_strtonum(num, min, max, ret);
}

/* "0x10de" or "10de": 1 to 8 hex digits, at most max. */
static int parse_hex(struct slice s, uint32_t max, uint32_t *ret)
{
	uint64_t v = 0;

	if (s.n >= 2 && s.p[0] == '0' && (s.p[1] == 'x' || s.p[1] == 'X'))
		s.p += 2, s.n -= 2;
	if (s.n == 0 || s.n > 8)
		return -EINVAL;
	for (size_t i = 0; i < s.n; i++) {
		char c = s.p[i];
		int d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -EINVAL;
		v = v << 4 | (uint64_t)d;
	}
	if (v > max)
		return -ERANGE;
	*ret = (uint32_t)v;
	return 0;
}

/* Hardware address: "aa:bb:..." of 1 to 32 bytes, lower-cased; else null. */
static json_t *json_hwaddr(struct slice s)
{
	char out[32 * 3];

	if (s.n < 2 || s.n > sizeof(out) - 1 || (s.n + 1) % 3 != 0)
		return json_null();
	for (size_t i = 0; i < s.n; i++) {
		char c = s.p[i];

		if (i % 3 == 2) {
			if (c != ':')
				return json_null();
			out[i] = c;
		} else if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) {
			out[i] = c;
		} else if (c >= 'A' && c <= 'F') {
			out[i] = (char)(c - 'A' + 'a');
		} else {
			return json_null();
		}
	}
	out[s.n] = '\0';
	return json_string(out);
}

/* Sets key to json from the first line of path, or null. */
static int set_attr_str(json_t *obj, const char *key, int rootfd, const char *path)
{
	char buf[INV_ATTR_MAX];
	struct slice s;

	if (read_attr(rootfd, path, buf, sizeof(buf), &s) < 0)
		return json_object_set_new(obj, key, json_null());
	return json_object_set_new(obj, key, json_text(s));
}

static json_t *attr_bool(int rootfd, const char *path)
{
	char buf[INV_ATTR_MAX];
	struct slice s;
	long long v;

	if (read_attr(rootfd, path, buf, sizeof(buf), &s) < 0 || parse_dec(s, 0, 1, &v) < 0)
		return json_null();
	return json_boolean(v);
}

static json_t *attr_hex(int rootfd, const char *path, uint32_t max, int width, uint32_t *ret)
{
	char buf[INV_ATTR_MAX], out[16];
	struct slice s;
	uint32_t v;

	if (read_attr(rootfd, path, buf, sizeof(buf), &s) < 0 || parse_hex(s, max, &v) < 0)
		return json_null();
	snprintf(out, sizeof(out), "0x%0*x", width, v);
	if (ret)
		*ret = v;
	return json_string(out);
}

/* The last component of the symlink path (e.g. a driver's name), or null. */
static json_t *link_basename(int rootfd, const char *dir, const char *name)
{
	char target[PATH_MAX];
	const char *base;
	ssize_t n;
	int fd;

	fd = rb_open_beneath(rootfd, dir, O_PATH | O_DIRECTORY);
	if (fd < 0)
		return json_null();
	n = readlinkat(fd, name, target, sizeof(target) - 1);
	close(fd);
	if (n <= 0)
		return json_null();
	target[n] = '\0';
	while (n > 1 && target[n - 1] == '/')
		target[--n] = '\0';
	base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (!*base)
		return json_null();
	return json_text((struct slice){ base, strlen(base) });
}

static bool exists_dir(int rootfd, const char *path)
{
	int fd = rb_open_beneath(rootfd, path, O_PATH | O_DIRECTORY);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* ---- directory listings ---- */

struct names {
	char **v;
	size_t n;
};

static void names_free(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int cmp_version(const void *a, const void *b)
{
	return strverscmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_plain(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names in directory path below the root, sorted in version order (nvme2n1
 * before nvme10n1) or, for fixed-width names such as PCI addresses whose hex
 * digits version order would scramble, plainly. Dot-files and names that
 * cannot be part of a path are left out. A missing directory is empty. */
static int list_dir(int rootfd, const char *path, bool version_order, struct names *ret)
{
	struct names l = { 0 };
	struct dirent *de;
	DIR *d;
	int fd;

	fd = rb_open_beneath(rootfd, path, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		*ret = l;
		return 0;
	}
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		*ret = l;
		return 0;
	}
	l.v = calloc(INV_DIR_MAX, sizeof(*l.v));
	if (!l.v)
		goto err_nomem;
	while (l.n < INV_DIR_MAX && (de = readdir(d))) {
		if (de->d_name[0] == '.' || !rb_path_is_safe(de->d_name) ||
		    strlen(de->d_name) > NAME_MAX)
			continue;
		l.v[l.n] = strdup(de->d_name);
		if (!l.v[l.n])
			goto err_nomem;
		l.n++;
	}
	closedir(d);
	qsort(l.v, l.n, sizeof(*l.v), version_order ? cmp_version : cmp_plain);
	*ret = l;
	return 0;

err_nomem:
	closedir(d);
	names_free(&l);
	return -ENOMEM;
}

/* ---- sections ---- */

static int collect_dmi(int rootfd, json_t *doc)
{
	static const char *const keys[] = { "sys_vendor", "product_name", "product_serial",
		                            "board_serial", "bios_version" };
	json_t *dmi = json_object();
	char path[PATH_MAX];

	if (!dmi || json_object_set_new(doc, "dmi", dmi) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < RB_ARRAY_SIZE(keys); i++) {
		if (pathf(path, sizeof(path), "%s/%s", "sys/class/dmi/id", keys[i]) < 0 ||
		    set_attr_str(dmi, keys[i], rootfd, path) < 0)
			return -ENOMEM;
	}
	return 0;
}

struct cpu_id {
	long long pkg, core;
};

static int cmp_cpu_id(const void *a, const void *b)
{
	const struct cpu_id *x = a, *y = b;

	if (x->pkg != y->pkg)
		return x->pkg < y->pkg ? -1 : 1;
	return x->core < y->core ? -1 : x->core > y->core;
}

struct cpu_count {
	struct cpu_id *ids;
	size_t n;      /* ids filled */
	long long thr; /* processors seen */
	bool topo;     /* some processor had a physical id */
	struct cpu_id cur;
	bool have_pkg, have_core, in_proc;
};

static void cpu_flush(struct cpu_count *c)
{
	if (c->in_proc && c->have_pkg && c->n < INV_CPU_MAX) {
		c->ids[c->n].pkg = c->cur.pkg;
		c->ids[c->n].core = c->have_core ? c->cur.core : -1;
		c->n++;
		c->topo = true;
	}
	c->in_proc = c->have_pkg = c->have_core = false;
}

/* Distinct packages and (package, core) pairs of sorted ids. */
static void cpu_distinct(struct cpu_id *ids, size_t n, long long *ret_pkgs, long long *ret_cores)
{
	long long pkgs = 0, cores = 0;

	qsort(ids, n, sizeof(*ids), cmp_cpu_id);
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || ids[i].pkg != ids[i - 1].pkg)
			pkgs++;
		if (i == 0 || cmp_cpu_id(&ids[i], &ids[i - 1]) != 0)
			cores++;
	}
	*ret_pkgs = pkgs;
	*ret_cores = cores;
}

static void cpuinfo_line(struct cpu_count *c, struct slice line, json_t **model)
{
	const char *colon = memchr(line.p, ':', line.n);
	struct slice key, val;
	long long v;

	if (!colon) {
		if (trim(line).n == 0)
			cpu_flush(c);
		return;
	}
	key = trim((struct slice){ line.p, (size_t)(colon - line.p) });
	val = trim((struct slice){ colon + 1, line.n - (size_t)(colon - line.p) - 1 });
	if (key.n == 9 && !memcmp(key.p, "processor", 9)) {
		cpu_flush(c);
		c->in_proc = true;
		c->thr++;
	} else if (key.n == 11 && !memcmp(key.p, "physical id", 11)) {
		if (parse_dec(val, 0, INT_MAX, &v) == 0) {
			c->cur.pkg = v;
			c->have_pkg = true;
		}
	} else if (key.n == 7 && !memcmp(key.p, "core id", 7)) {
		if (parse_dec(val, 0, INT_MAX, &v) == 0) {
			c->cur.core = v;
			c->have_core = true;
		}
	} else if (key.n == 10 && !memcmp(key.p, "model name", 10) && !*model && val.n) {
		*model = json_text(val);
	}
}

/* Topology from sys/devices/system/cpu/cpuN/topology when /proc/cpuinfo has
 * none (arm64 prints no "physical id"). */
static int cpu_sysfs_topology(int rootfd, struct cpu_count *c)
{
	struct names l;
	char path[PATH_MAX], buf[64];
	int r;

	r = list_dir(rootfd, "sys/devices/system/cpu", true, &l);
	if (r < 0)
		return r;
	for (size_t i = 0; i < l.n && c->n < INV_CPU_MAX; i++) {
		struct slice s;
		long long num, pkg, core;

		if (strncmp(l.v[i], "cpu", 3) ||
		    parse_dec((struct slice){ l.v[i] + 3, strlen(l.v[i] + 3) }, 0, INT_MAX, &num) <
		            0)
			continue;
		if (pathf(path, sizeof(path), "%s/%s/topology/physical_package_id",
		          "sys/devices/system/cpu", l.v[i]) < 0 ||
		    read_attr(rootfd, path, buf, sizeof(buf), &s) < 0 ||
		    parse_dec(s, 0, INT_MAX, &pkg) < 0)
			continue;
		if (pathf(path, sizeof(path), "%s/%s/topology/core_id", "sys/devices/system/cpu",
		          l.v[i]) < 0 ||
		    read_attr(rootfd, path, buf, sizeof(buf), &s) < 0 ||
		    parse_dec(s, 0, INT_MAX, &core) < 0)
			core = -1;
		c->ids[c->n++] = (struct cpu_id){ pkg, core };
		c->topo = true;
	}
	names_free(&l);
	return 0;
}

static int read_proc(int rootfd, const char *path, char **ret, size_t *ret_len)
{
	char *buf = malloc(INV_PROC_MAX);
	size_t len;
	int r;

	if (!buf)
		return -ENOMEM;
	r = read_raw(rootfd, path, buf, INV_PROC_MAX, &len);
	if (r < 0) {
		free(buf);
		return r;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

static int collect_cpu(int rootfd, json_t *doc)
{
	struct cpu_count c = { 0 };
	json_t *cpu, *model = NULL;
	long long pkgs = 0, cores = 0, threads = 0;
	char *buf = NULL;
	size_t len = 0;
	int r = -ENOMEM;

	cpu = json_object();
	if (!cpu || json_object_set_new(doc, "cpu", cpu) < 0)
		return -ENOMEM;
	c.ids = calloc(INV_CPU_MAX, sizeof(*c.ids));
	if (!c.ids)
		return -ENOMEM;
	r = read_proc(rootfd, "proc/cpuinfo", &buf, &len);
	if (r == -ENOMEM)
		goto out;
	for (size_t off = 0; buf && off < len;) {
		const char *nl = memchr(buf + off, '\n', len - off);
		size_t n = nl ? (size_t)(nl - (buf + off)) : len - off;

		cpuinfo_line(&c, (struct slice){ buf + off, n }, &model);
		off += n + 1;
	}
	cpu_flush(&c);
	if (!c.topo) {
		r = cpu_sysfs_topology(rootfd, &c);
		if (r < 0)
			goto out;
	}
	if (c.topo)
		cpu_distinct(c.ids, c.n, &pkgs, &cores);
	threads = c.thr ? c.thr : (long long)c.n;
	r = -ENOMEM;
	if (json_object_set_new(cpu, "model", model ? model : json_null()) < 0 ||
	    json_object_set_new(cpu, "sockets", c.topo ? json_integer(pkgs) : json_null()) < 0 ||
	    json_object_set_new(cpu, "cores", c.topo ? json_integer(cores) : json_null()) < 0 ||
	    json_object_set_new(cpu, "threads", threads ? json_integer(threads) : json_null()) < 0)
		goto out;
	r = 0;
out:
	free(buf);
	free(c.ids);
	return r;
}

static int collect_memory(int rootfd, json_t *doc)
{
	json_t *mem = json_object(), *total = NULL;
	char *buf = NULL;
	size_t len = 0;
	int r;

	if (!mem || json_object_set_new(doc, "memory", mem) < 0)
		return -ENOMEM;
	r = read_proc(rootfd, "proc/meminfo", &buf, &len);
	if (r == -ENOMEM)
		return r;
	for (size_t off = 0; buf && off < len && !total;) {
		const char *nl = memchr(buf + off, '\n', len - off);
		size_t n = nl ? (size_t)(nl - (buf + off)) : len - off;
		struct slice line = { buf + off, n };
		long long kb;

		off += n + 1;
		if (line.n < 9 || memcmp(line.p, "MemTotal:", 9))
			continue;
		line = trim((struct slice){ line.p + 9, line.n - 9 });
		if (line.n < 3 || memcmp(line.p + line.n - 3, " kB", 3))
			break;
		line = trim((struct slice){ line.p, line.n - 3 });
		if (parse_dec(line, 0, INT64_MAX / 1024, &kb) == 0)
			total = json_integer(kb * 1024);
		break;
	}
	free(buf);
	return json_object_set_new(mem, "total_bytes", total ? total : json_null()) < 0 ? -ENOMEM
	                                                                                : 0;
}

static bool disk_is_virtual(const char *name)
{
	static const char *const skip[] = { "loop", "ram", "zram", "dm-", "sr" };

	for (size_t i = 0; i < RB_ARRAY_SIZE(skip); i++)
		if (!strncmp(name, skip[i], strlen(skip[i])))
			return true;
	return false;
}

/* SCSI VPD page 0x80: 4-byte header (page code at [1], length at [2..3]),
 * then the serial, space padded. */
static json_t *vpd_serial(int rootfd, const char *path)
{
	unsigned char buf[INV_ATTR_MAX];
	size_t len, n;
	struct slice s;

	if (read_raw(rootfd, path, (char *)buf, sizeof(buf), &len) < 0 || len < 4 || buf[1] != 0x80)
		return NULL;
	n = (size_t)buf[2] << 8 | buf[3];
	if (n > len - 4)
		return NULL;
	s = trim((struct slice){ (const char *)buf + 4, n });
	while (s.n && s.p[s.n - 1] == '\0')
		s.n--;
	return s.n ? json_text(s) : NULL;
}

static int disk_serial(int rootfd, const char *name, json_t *disk)
{
	/* device/serial: NVMe controllers and some SCSI; serial: virtio-blk. */
	char path[PATH_MAX], buf[INV_ATTR_MAX];
	json_t *serial = NULL;
	struct slice s;

	if (pathf(path, sizeof(path), "sys/block/%s/device/serial", name) == 0 &&
	    read_attr(rootfd, path, buf, sizeof(buf), &s) == 0)
		serial = json_text(s);
	if (!serial && pathf(path, sizeof(path), "sys/block/%s/device/vpd_pg80", name) == 0)
		serial = vpd_serial(rootfd, path);
	if (!serial && pathf(path, sizeof(path), "sys/block/%s/serial", name) == 0 &&
	    read_attr(rootfd, path, buf, sizeof(buf), &s) == 0)
		serial = json_text(s);
	return json_object_set_new(disk, "serial", serial ? serial : json_null());
}

static int collect_disk(int rootfd, const char *name, json_t *disks)
{
	char path[PATH_MAX], buf[INV_ATTR_MAX];
	json_t *disk, *size = NULL;
	struct slice s;
	long long sec;

	if (pathf(path, sizeof(path), "sys/block/%s", name) < 0 || !exists_dir(rootfd, path))
		return 0; /* not a device directory: a stray file, a loop */
	disk = json_object();
	if (!disk || json_array_append_new(disks, disk) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/block/%s/%s", name, "size") == 0 &&
	    read_attr(rootfd, path, buf, sizeof(buf), &s) == 0 &&
	    parse_dec(s, 0, INV_SIZE_MAX_SEC, &sec) == 0)
		size = json_integer(sec * 512);
	if (json_object_set_new(disk, "name", json_text((struct slice){ name, strlen(name) })) <
	            0 ||
	    json_object_set_new(disk, "size_bytes", size ? size : json_null()) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/block/%s/device/%s", name, "model") < 0 ||
	    set_attr_str(disk, "model", rootfd, path) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/block/%s/device/%s", name, "vendor") < 0 ||
	    set_attr_str(disk, "vendor", rootfd, path) < 0)
		return -ENOMEM;
	if (disk_serial(rootfd, name, disk) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/block/%s/%s", name, "queue/rotational") < 0 ||
	    json_object_set_new(disk, "rotational", attr_bool(rootfd, path)) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/block/%s/%s", name, "removable") < 0 ||
	    json_object_set_new(disk, "removable", attr_bool(rootfd, path)) < 0)
		return -ENOMEM;
	return 0;
}

static int collect_disks(int rootfd, unsigned flags, json_t *doc)
{
	json_t *disks = json_array();
	struct names l;
	int r;

	if (!disks || json_object_set_new(doc, "disks", disks) < 0)
		return -ENOMEM;
	r = list_dir(rootfd, "sys/block", true, &l);
	if (r < 0)
		return r;
	for (size_t i = 0; i < l.n && r == 0; i++)
		if ((flags & AGENT_INV_ALL_DISKS) || !disk_is_virtual(l.v[i]))
			r = collect_disk(rootfd, l.v[i], disks);
	names_free(&l);
	return r;
}

static json_t *nic_type(int rootfd, const char *path)
{
	char buf[64];
	struct slice s;
	long long v;

	if (read_attr(rootfd, path, buf, sizeof(buf), &s) < 0 || parse_dec(s, 0, 65535, &v) < 0)
		return json_null();
	/* ARPHRD_ETHER and ARPHRD_INFINIBAND */
	return json_string(v == 1 ? "ethernet" : v == 32 ? "infiniband" : "other");
}

static int collect_nic(int rootfd, const char *name, json_t *nics)
{
	char path[PATH_MAX], buf[INV_ATTR_MAX];
	json_t *nic, *speed = NULL;
	struct slice s;
	long long v;

	if (pathf(path, sizeof(path), "sys/class/net/%s/%s", name, "device") < 0 ||
	    !exists_dir(rootfd, path))
		return 0; /* virtual: lo, bridges, bonds, veth, tunnels */
	nic = json_object();
	if (!nic || json_array_append_new(nics, nic) < 0)
		return -ENOMEM;
	if (json_object_set_new(nic, "name", json_text((struct slice){ name, strlen(name) })) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/class/net/%s/%s", name, "address") < 0 ||
	    json_object_set_new(nic, "mac",
	                        read_attr(rootfd, path, buf, sizeof(buf), &s) == 0
	                                ? json_hwaddr(s)
	                                : json_null()) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/class/net/%s/%s", name, "type") < 0 ||
	    json_object_set_new(nic, "type", nic_type(rootfd, path)) < 0)
		return -ENOMEM;
	/* speed is -1 (or 4294967295 from older drivers, or EINVAL) while the
	 * link is down; 10 Tb/s bounds a plausible value. */
	if (pathf(path, sizeof(path), "sys/class/net/%s/%s", name, "speed") == 0 &&
	    read_attr(rootfd, path, buf, sizeof(buf), &s) == 0 &&
	    parse_dec(s, 1, 10000000, &v) == 0)
		speed = json_integer(v);
	if (json_object_set_new(nic, "speed_mbps", speed ? speed : json_null()) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/class/net/%s/%s", name, "carrier") < 0 ||
	    json_object_set_new(nic, "carrier", attr_bool(rootfd, path)) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/class/net/%s/%s", name, "device") < 0 ||
	    json_object_set_new(nic, "driver", link_basename(rootfd, path, "driver")) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/class/net/%s%s", name, "") < 0 ||
	    json_object_set_new(nic, "bus_id", link_basename(rootfd, path, "device")) < 0)
		return -ENOMEM;
	return 0;
}

static int collect_nics(int rootfd, json_t *doc)
{
	json_t *nics = json_array();
	struct names l;
	int r;

	if (!nics || json_object_set_new(doc, "nics", nics) < 0)
		return -ENOMEM;
	r = list_dir(rootfd, "sys/class/net", true, &l);
	if (r < 0)
		return r;
	for (size_t i = 0; i < l.n && r == 0; i++)
		if (strcmp(l.v[i], "lo"))
			r = collect_nic(rootfd, l.v[i], nics);
	names_free(&l);
	return r;
}

static bool pci_is_gpu(uint32_t vendor, uint32_t cls)
{
	return vendor == 0x10de && (cls >> 8 == 0x0300 || cls >> 8 == 0x0302);
}

static bool pci_is_ib_hca(uint32_t vendor, uint32_t cls)
{
	return cls >> 8 == 0x0207 ||
	       (vendor == 0x15b3 && (cls >> 8 == 0x0200 || cls >> 8 == 0x0207));
}

/* The first entry of the device's infiniband/ directory (e.g. "mlx5_0"). */
static json_t *pci_ib_device(int rootfd, const char *addr)
{
	char path[PATH_MAX];
	struct names l;
	json_t *v;

	if (pathf(path, sizeof(path), "sys/bus/pci/devices/%s/%s", addr, "infiniband") < 0 ||
	    list_dir(rootfd, path, true, &l) < 0)
		return json_null();
	v = l.n ? json_text((struct slice){ l.v[0], strlen(l.v[0]) }) : json_null();
	names_free(&l);
	return v;
}

static int collect_pci_dev(int rootfd, const char *addr, json_t *pci, json_t *gpus, json_t *hcas)
{
	static const struct {
		const char *key;
		uint32_t max;
		int width;
	} ids[] = {
		{ "vendor", 0xffff, 4 },           { "device", 0xffff, 4 },
		{ "class", 0xffffff, 6 },          { "subsystem_vendor", 0xffff, 4 },
		{ "subsystem_device", 0xffff, 4 },
	};
	uint32_t val[RB_ARRAY_SIZE(ids)] = { 0 };
	bool have[RB_ARRAY_SIZE(ids)] = { 0 };
	char path[PATH_MAX], buf[64];
	json_t *dev, *numa = NULL;
	struct slice s;
	long long v;

	if (pathf(path, sizeof(path), "sys/bus/pci/devices/%s", addr) < 0 ||
	    !exists_dir(rootfd, path))
		return 0;
	dev = json_object();
	if (!dev || json_array_append_new(pci, dev) < 0)
		return -ENOMEM;
	if (json_object_set_new(dev, "address", json_text((struct slice){ addr, strlen(addr) })) <
	    0)
		return -ENOMEM;
	for (size_t i = 0; i < RB_ARRAY_SIZE(ids); i++) {
		json_t *j;

		if (pathf(path, sizeof(path), "sys/bus/pci/devices/%s/%s", addr, ids[i].key) < 0)
			j = json_null();
		else
			j = attr_hex(rootfd, path, ids[i].max, ids[i].width, &val[i]);
		have[i] = j && !json_is_null(j);
		if (json_object_set_new(dev, ids[i].key, j) < 0)
			return -ENOMEM;
	}
	if (pathf(path, sizeof(path), "sys/bus/pci/devices/%s%s", addr, "") < 0 ||
	    json_object_set_new(dev, "driver", link_basename(rootfd, path, "driver")) < 0)
		return -ENOMEM;
	if (pathf(path, sizeof(path), "sys/bus/pci/devices/%s/%s", addr, "numa_node") == 0 &&
	    read_attr(rootfd, path, buf, sizeof(buf), &s) == 0 && parse_dec(s, 0, 65535, &v) == 0)
		numa = json_integer(v);
	if (json_object_set_new(dev, "numa_node", numa ? numa : json_null()) < 0 ||
	    json_object_set_new(dev, "ib_device", pci_ib_device(rootfd, addr)) < 0)
		return -ENOMEM;
	if (!have[0] || !have[2])
		return 0;
	if (pci_is_gpu(val[0], val[2]) && json_array_append(gpus, dev) < 0)
		return -ENOMEM;
	if (pci_is_ib_hca(val[0], val[2]) && json_array_append(hcas, dev) < 0)
		return -ENOMEM;
	return 0;
}

static int collect_pci(int rootfd, json_t *doc)
{
	json_t *pci = json_array(), *gpus = json_array(), *hcas = json_array();
	struct names l;
	int r = -ENOMEM;

	if (!pci || !gpus || !hcas || json_object_set(doc, "pci", pci) < 0 ||
	    json_object_set(doc, "gpus", gpus) < 0 || json_object_set(doc, "ib_hcas", hcas) < 0)
		goto out;
	r = list_dir(rootfd, "sys/bus/pci/devices", false, &l);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < l.n && r == 0; i++)
		r = collect_pci_dev(rootfd, l.v[i], pci, gpus, hcas);
	names_free(&l);
out:
	json_decref(pci);
	json_decref(gpus);
	json_decref(hcas);
	return r;
}

static int collect_counts(json_t *doc)
{
	static const char *const keys[] = { "disks", "nics", "pci", "gpus", "ib_hcas" };
	json_t *counts = json_object();

	if (!counts || json_object_set_new(doc, "counts", counts) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < RB_ARRAY_SIZE(keys); i++)
		if (json_object_set_new(counts, keys[i],
		                        json_integer((json_int_t)json_array_size(
		                                json_object_get(doc, keys[i])))) < 0)
			return -ENOMEM;
	return 0;
}

int agent_inventory_collect(const char *root, unsigned flags, json_t **ret)
{
	json_t *doc;
	int rootfd, r;

	rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0)
		return -errno;
	doc = json_object();
	r = -ENOMEM;
	if (!doc || json_object_set_new(doc, "version", json_integer(1)) < 0 ||
	    json_object_set_new(doc, "uefi", json_boolean(exists_dir(rootfd, "sys/firmware/efi"))) <
	            0)
		goto err;
	if ((r = collect_dmi(rootfd, doc)) < 0 || (r = collect_cpu(rootfd, doc)) < 0 ||
	    (r = collect_memory(rootfd, doc)) < 0 || (r = collect_disks(rootfd, flags, doc)) < 0 ||
	    (r = collect_nics(rootfd, doc)) < 0 || (r = collect_pci(rootfd, doc)) < 0 ||
	    (r = collect_counts(doc)) < 0)
		goto err;
	close(rootfd);
	*ret = doc;
	return 0;

err:
	log_debug("inventory of %s: %s", root, strerror(-r));
	json_decref(doc);
	close(rootfd);
	return r;
}

static void inv_usage(FILE *o)
{
	fputs("usage: rackboot-agent inventory [--root DIR] [--pretty] [--all-disks]\n"
	      "Prints the node's hardware inventory as JSON, read from DIR/proc and DIR/sys.\n",
	      o);
}

int agent_inventory_run(int argc, char **argv, FILE *out)
{
	const char *root = "/";
	unsigned flags = 0;
	size_t jflags = JSON_COMPACT;
	json_t *doc;
	int r;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--root") && i + 1 < argc) {
			root = argv[++i];
		} else if (!strncmp(argv[i], "--root=", 7) && argv[i][7]) {
			root = argv[i] + 7;
		} else if (!strcmp(argv[i], "--pretty")) {
			jflags = JSON_INDENT(2);
		} else if (!strcmp(argv[i], "--all-disks")) {
			flags |= AGENT_INV_ALL_DISKS;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			inv_usage(out);
			return 0;
		} else {
			inv_usage(stderr);
			return 2;
		}
	}
	r = agent_inventory_collect(root, flags, &doc);
	if (r < 0) {
		fprintf(stderr, "rackboot-agent inventory: %s: %s\n", root, strerror(-r));
		return 1;
	}
	r = json_dumpf(doc, out, jflags | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(doc);
	if (r < 0 || fputc('\n', out) == EOF || fflush(out) == EOF) {
		fprintf(stderr, "rackboot-agent inventory: cannot write output\n");
		return 1;
	}
	return 0;
}

int agent_inventory_main(int argc, char **argv)
{
	return agent_inventory_run(argc, argv, stdout);
}
