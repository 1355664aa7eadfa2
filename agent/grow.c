/* grow: after an image smaller than the disk is written, the last
 * partition is grown to the end of the disk, so the installed system gets
 * all of it.
 *
 * Only the partition table changes. The filesystem inside the partition is
 * grown by the installed system on its first boot (cloud-init's growpart
 * and resize_rootfs, systemd's x-systemd.growfs mount option or
 * systemd-growfs, or an equivalent unit in the image): growing ext4/XFS/
 * btrfs needs the filesystem's own tools or the mounted kernel driver,
 * which the agent does not carry and must not emulate.
 *
 * GPT: the primary header (LBA 1) and its entries must be valid (signature,
 *   header and entries CRC-32, sane sizes); a damaged table is refused, not
 *   repaired. The last used entry must be the partition that ends highest
 *   (otherwise growing it would overlap another partition or leave it
 *   behind: refused). The backup entries and header move to the end of the
 *   disk, last_usable_lba follows them, the partition ends at the new
 *   last_usable_lba, and both headers get fresh CRCs. Written in an order
 *   that leaves a readable table at every step: the new backup first
 *   (fsync), then the protective MBR's size, then the primary entries and
 *   header (fsync), then the old backup header is zeroed.
 * MBR: the last used primary entry must end highest and not be an
 *   extended partition; a disk of 2 TiB or more (2^32 sectors) is refused,
 *   since MBR cannot describe it. Start and size are rewritten, the CHS end
 *   set to the LBA's or to 1023/254/63 beyond the CHS range.
 * On a block device the kernel re-reads the table afterwards (BLKRRPART).
 *
 * Owns the fd while it runs. Never moves a partition's start, never writes
 * outside the table areas (LBA 0, primary and backup header and entries,
 * the old backup header sector). */
#include "agent/grow.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define GPT_SIG         "EFI PART"
#define GPT_HDR_MIN     92
#define GPT_ENTRY_MIN   128
#define GPT_ENTRY_MAX   4096
#define GPT_ENTRIES_MAX (1024U * 1024) /* bytes of entries accepted */
#define MBR_TABLE       446
#define MBR_MAX_SECTORS 0xffffffffULL
#define SECTOR_MAX      4096

struct grow {
	int fd;
	uint64_t size;
	uint32_t ss;
	uint64_t nlba;
	char *err;
	size_t errlen;
};

static int gfail(struct grow *g, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int gfail(struct grow *g, int e, const char *fmt, ...)
{
	va_list ap;

	if (g->err && g->errlen) {
		va_start(ap, fmt);
		vsnprintf(g->err, g->errlen, fmt, ap);
		va_end(ap);
	}
	return e;
}

uint32_t agent_crc32(const void *data, size_t len)
{
	static uint32_t table[256];
	static bool ready;
	const uint8_t *p = data;
	uint32_t c = 0xffffffffu;

	/* Filling the table twice from two threads writes the same values. */
	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t v = i;

			for (int k = 0; k < 8; k++)
				v = v & 1 ? 0xedb88320u ^ (v >> 1) : v >> 1;
			table[i] = v;
		}
		__atomic_store_n(&ready, true, __ATOMIC_RELEASE);
	}
	for (size_t i = 0; i < len; i++)
		c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static int rd(struct grow *g, void *buf, size_t len, uint64_t lba)
{
	int e = rb_pread_all(g->fd, buf, len, lba * g->ss);

	if (e < 0)
		return gfail(g, e, "reading LBA %llu: %s", (unsigned long long)lba, strerror(-e));
	return 0;
}

static int wr(struct grow *g, const void *buf, size_t len, uint64_t lba)
{
	int e = rb_pwrite_all(g->fd, buf, len, lba * g->ss);

	if (e < 0)
		return gfail(g, e, "writing LBA %llu: %s", (unsigned long long)lba, strerror(-e));
	return 0;
}

static int sync_fd(struct grow *g)
{
	if (fsync(g->fd) < 0) {
		int e = -errno;

		return gfail(g, e, "fsync: %s", strerror(-e));
	}
	return 0;
}

/* ---- GPT --------------------------------------------------------------------- */

/* Header field offsets (UEFI 2.x, 5.3.2). */
enum {
	H_REVISION = 8,
	H_SIZE = 12,
	H_CRC = 16,
	H_RESERVED = 20,
	H_MY_LBA = 24,
	H_ALT_LBA = 32,
	H_FIRST_USABLE = 40,
	H_LAST_USABLE = 48,
	H_ENTRY_LBA = 72,
	H_NUM_ENTRIES = 80,
	H_ENTRY_SIZE = 84,
	H_ENTRIES_CRC = 88,
	E_FIRST = 32,
	E_LAST = 40,
};

static uint32_t header_crc(const uint8_t *h, uint32_t hsize)
{
	uint8_t tmp[SECTOR_MAX];

	memcpy(tmp, h, hsize);
	put32(tmp + H_CRC, 0);
	return agent_crc32(tmp, hsize);
}

static bool entry_used(const uint8_t *e)
{
	for (int i = 0; i < 16; i++)
		if (e[i])
			return true;
	return false;
}

/* Checks the primary header h and reads its entries into *ret_ents. */
static int gpt_load(struct grow *g, const uint8_t *h, uint8_t **ret_ents, size_t *ret_len)
{
	uint32_t hsize = le32(h + H_SIZE), n = le32(h + H_NUM_ENTRIES),
	         esz = le32(h + H_ENTRY_SIZE);
	uint64_t elba = le64(h + H_ENTRY_LBA), first = le64(h + H_FIRST_USABLE);
	uint64_t last = le64(h + H_LAST_USABLE), alt = le64(h + H_ALT_LBA);
	uint64_t elen, esec;
	uint8_t *ents;
	int e;

	if (hsize < GPT_HDR_MIN || hsize > g->ss)
		return gfail(g, -EBADMSG, "GPT header size %u is invalid: table damaged", hsize);
	if (header_crc(h, hsize) != le32(h + H_CRC))
		return gfail(g, -EBADMSG, "GPT header CRC-32 does not match: table damaged");
	if (le64(h + H_MY_LBA) != 1)
		return gfail(g, -EBADMSG, "GPT header at LBA 1 says it is at LBA %llu: damaged",
		             (unsigned long long)le64(h + H_MY_LBA));
	if (esz < GPT_ENTRY_MIN || esz > GPT_ENTRY_MAX || esz % GPT_ENTRY_MIN != 0 || n == 0 ||
	    (uint64_t)n * esz > GPT_ENTRIES_MAX)
		return gfail(g, -EBADMSG, "GPT has %u entries of %u bytes: table damaged", n, esz);
	elen = (uint64_t)n * esz;
	esec = (elen + g->ss - 1) / g->ss;
	if (elba < 2 || elba + esec > first || first > last || last >= alt || alt >= g->nlba ||
	    alt <= 1)
		return gfail(g, -EBADMSG,
		             "GPT header layout is inconsistent (entries at LBA %llu, usable "
		             "%llu-%llu, backup at %llu, disk has %llu sectors): damaged, or the "
		             "disk is smaller than the table",
		             (unsigned long long)elba, (unsigned long long)first,
		             (unsigned long long)last, (unsigned long long)alt,
		             (unsigned long long)g->nlba);
	ents = calloc(1, esec * g->ss);
	if (!ents)
		return gfail(g, -ENOMEM, "out of memory");
	if ((e = rd(g, ents, (size_t)(esec * g->ss), elba)) < 0) {
		free(ents);
		return e;
	}
	if (agent_crc32(ents, (size_t)elen) != le32(h + H_ENTRIES_CRC)) {
		free(ents);
		return gfail(g, -EBADMSG, "GPT partition entries CRC-32 does not match: damaged");
	}
	*ret_ents = ents;
	*ret_len = (size_t)(esec * g->ss);
	return 0;
}

/* The index of the partition to grow, after checking every used entry. */
static int gpt_pick(struct grow *g, const uint8_t *h, const uint8_t *ents, size_t *ret)
{
	uint32_t n = le32(h + H_NUM_ENTRIES), esz = le32(h + H_ENTRY_SIZE);
	uint64_t first = le64(h + H_FIRST_USABLE), last = le64(h + H_LAST_USABLE);
	uint64_t top = 0;
	size_t li = SIZE_MAX, ti = 0;

	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = ents + (size_t)i * esz;
		uint64_t s = le64(e + E_FIRST), t = le64(e + E_LAST);

		if (!entry_used(e))
			continue;
		if (s > t || s < first || t > last)
			return gfail(
			        g, -EBADMSG,
			        "GPT partition %u (LBA %llu-%llu) lies outside the usable area "
			        "%llu-%llu: table damaged",
			        i + 1, (unsigned long long)s, (unsigned long long)t,
			        (unsigned long long)first, (unsigned long long)last);
		li = i;
		if (t >= top) {
			top = t;
			ti = i;
		}
	}
	if (li == SIZE_MAX)
		return gfail(g, -EINVAL, "the GPT has no partitions to grow");
	if (ti != li)
		return gfail(g, -EINVAL,
		             "the last GPT partition (%zu) is not the one that ends highest on the "
		             "disk (partition %zu ends at LBA %llu): not growing it",
		             li + 1, ti + 1, (unsigned long long)top);
	*ret = li;
	return 0;
}

/* Updates the protective MBR's 0xEE entry to cover the grown disk. */
static int gpt_fix_pmbr(struct grow *g)
{
	uint8_t mbr[512];
	int e;

	if ((e = rb_pread_all(g->fd, mbr, sizeof(mbr), 0)) < 0)
		return gfail(g, e, "reading the MBR: %s", strerror(-e));
	if (mbr[510] != 0x55 || mbr[511] != 0xaa)
		return 0;
	for (int i = 0; i < 4; i++) {
		uint8_t *p = mbr + MBR_TABLE + 16 * i;

		if (p[4] == 0xee && le32(p + 8) == 1) {
			put32(p + 12, (uint32_t)RB_MIN(g->nlba - 1, MBR_MAX_SECTORS));
			if ((e = rb_pwrite_all(g->fd, mbr, sizeof(mbr), 0)) < 0)
				return gfail(g, e, "writing the protective MBR: %s", strerror(-e));
			break;
		}
	}
	return 0;
}

static int gpt_grow(struct grow *g, uint8_t *h, char *report, size_t replen)
{
	uint8_t *ents = NULL, bh[SECTOR_MAX], zero[SECTOR_MAX] = { 0 };
	uint32_t hsize = le32(h + H_SIZE), n = le32(h + H_NUM_ENTRIES),
	         esz = le32(h + H_ENTRY_SIZE);
	uint64_t old_alt = le64(h + H_ALT_LBA), new_alt = g->nlba - 1, esec, new_last, old_end;
	size_t elen = 0, li = 0;
	uint8_t *ent;
	int e;

	if ((e = gpt_load(g, h, &ents, &elen)) < 0)
		return e;
	if ((e = gpt_pick(g, h, ents, &li)) < 0)
		goto out;
	esec = elen / g->ss;
	new_last = new_alt - esec - 1;
	ent = ents + li * esz;
	old_end = le64(ent + E_LAST);
	if (new_last < le64(h + H_LAST_USABLE)) {
		e = gfail(g, -EINVAL, "the disk is smaller than the GPT says");
		goto out;
	}
	if (old_alt == new_alt && old_end == new_last) {
		snprintf(report, replen, "gpt: partition %zu already ends at the end of the disk",
		         li + 1);
		e = 0;
		goto out;
	}
	put64(ent + E_LAST, new_last);
	put32(h + H_ENTRIES_CRC, agent_crc32(ents, (size_t)n * esz));
	put64(h + H_ALT_LBA, new_alt);
	put64(h + H_LAST_USABLE, new_last);
	put32(h + H_CRC, header_crc(h, hsize));
	/* The backup: the same header seen from the end of the disk. */
	memcpy(bh, h, g->ss);
	put64(bh + H_MY_LBA, new_alt);
	put64(bh + H_ALT_LBA, 1);
	put64(bh + H_ENTRY_LBA, new_alt - esec);
	put32(bh + H_CRC, header_crc(bh, hsize));
	if ((e = wr(g, ents, elen, new_alt - esec)) < 0 || (e = wr(g, bh, g->ss, new_alt)) < 0 ||
	    (e = sync_fd(g)) < 0 || (e = gpt_fix_pmbr(g)) < 0 ||
	    (e = wr(g, ents, elen, le64(h + H_ENTRY_LBA))) < 0 || (e = wr(g, h, g->ss, 1)) < 0 ||
	    (e = sync_fd(g)) < 0)
		goto out;
	if (old_alt != new_alt && ((e = wr(g, zero, g->ss, old_alt)) < 0 || (e = sync_fd(g)) < 0))
		goto out;
	snprintf(report, replen, "gpt: partition %zu grown from %llu to %llu sectors", li + 1,
	         (unsigned long long)(old_end - le64(ent + E_FIRST) + 1),
	         (unsigned long long)(new_last - le64(ent + E_FIRST) + 1));
	e = 0;
out:
	free(ents);
	return e;
}

/* ---- MBR ------------------------------------------------------------------------ */

static bool mbr_is_extended(uint8_t type)
{
	return type == 0x05 || type == 0x0f || type == 0x85;
}

static void chs(uint64_t lba, uint8_t out[3])
{
	uint64_t cyl = lba / (255 * 63), head = (lba / 63) % 255, sec = lba % 63 + 1;

	if (cyl > 1023) {
		cyl = 1023;
		head = 254;
		sec = 63;
	}
	out[0] = (uint8_t)head;
	out[1] = (uint8_t)(sec | ((cyl >> 2) & 0xc0));
	out[2] = (uint8_t)cyl;
}

static int mbr_grow(struct grow *g, uint8_t *mbr, char *report, size_t replen)
{
	uint64_t top = 0, start, old, want;
	int li = -1, ti = -1, e;
	uint8_t *p;

	if (g->nlba > MBR_MAX_SECTORS)
		return gfail(g, -EINVAL,
		             "the disk has %llu sectors: an MBR cannot describe more than 2^32; "
		             "use a GPT image",
		             (unsigned long long)g->nlba);
	for (int i = 0; i < 4; i++) {
		const uint8_t *q = mbr + MBR_TABLE + 16 * i;
		uint64_t s = le32(q + 8), n = le32(q + 12);

		if (q[0] != 0 && q[0] != 0x80)
			return gfail(g, -EBADMSG,
			             "MBR entry %d has boot flag 0x%02x: table damaged", i + 1,
			             q[0]);
		if (q[4] == 0 || n == 0)
			continue;
		if (s == 0 || s + n > g->nlba)
			return gfail(
			        g, -EBADMSG,
			        "MBR partition %d (sectors %llu+%llu) does not fit the disk of "
			        "%llu sectors: damaged",
			        i + 1, (unsigned long long)s, (unsigned long long)n,
			        (unsigned long long)g->nlba);
		li = i;
		if (s + n >= top) {
			top = s + n;
			ti = i;
		}
	}
	if (li < 0)
		return gfail(g, -EINVAL, "the MBR has no partitions to grow");
	if (ti != li)
		return gfail(g, -EINVAL,
		             "the last MBR partition (%d) is not the one that ends highest on the "
		             "disk (partition %d ends at sector %llu): not growing it",
		             li + 1, ti + 1, (unsigned long long)top);
	p = mbr + MBR_TABLE + 16 * li;
	if (mbr_is_extended(p[4]))
		return gfail(g, -EINVAL,
		             "the last MBR partition (%d) is an extended partition: not growing it",
		             li + 1);
	start = le32(p + 8);
	old = le32(p + 12);
	want = g->nlba - start;
	if (want == old) {
		snprintf(report, replen, "mbr: partition %d already ends at the end of the disk",
		         li + 1);
		return 0;
	}
	put32(p + 12, (uint32_t)want);
	chs(g->nlba - 1, p + 5);
	if ((e = rb_pwrite_all(g->fd, mbr, 512, 0)) < 0)
		return gfail(g, e, "writing the MBR: %s", strerror(-e));
	if ((e = sync_fd(g)) < 0)
		return e;
	snprintf(report, replen, "mbr: partition %d grown from %llu to %llu sectors", li + 1,
	         (unsigned long long)old, (unsigned long long)want);
	return 0;
}

/* ---- entry points ------------------------------------------------------------------ */

int agent_grow_fd(int fd, uint64_t size, uint32_t sector_size, char *report, size_t replen,
                  char *err, size_t errlen)
{
	struct grow g = { .fd = fd, .size = size, .ss = sector_size, .err = err, .errlen = errlen };
	uint8_t s0[SECTOR_MAX], s1[SECTOR_MAX];
	bool pmbr = false;
	int e;

	if (sector_size < 512 || sector_size > SECTOR_MAX || (sector_size & (sector_size - 1)))
		return gfail(&g, -EINVAL, "sector size %u is not supported", sector_size);
	g.nlba = size / sector_size;
	if (g.nlba < 4)
		return gfail(&g, -ENOENT, "the disk is too small to hold a partition table");
	if ((e = rd(&g, s0, g.ss, 0)) < 0 || (e = rd(&g, s1, g.ss, 1)) < 0)
		return e;
	if (s0[510] == 0x55 && s0[511] == 0xaa)
		for (int i = 0; i < 4; i++)
			pmbr |= s0[MBR_TABLE + 16 * i + 4] == 0xee;
	if (!memcmp(s1, GPT_SIG, 8))
		return gpt_grow(&g, s1, report, replen);
	if (pmbr)
		return gfail(&g, -EBADMSG,
		             "protective MBR but no GPT header at LBA 1: primary GPT damaged");
	if (s0[510] == 0x55 && s0[511] == 0xaa)
		return mbr_grow(&g, s0, report, replen);
	return gfail(&g, -ENOENT, "no partition table (neither GPT nor MBR)");
}

int agent_grow_last_partition(const char *target, char *report, size_t replen, char *err,
                              size_t errlen)
{
	uint32_t ss = 512;
	uint64_t size;
	struct stat st;
	int fd, e;

	fd = open(target, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		e = -errno;
		snprintf(err, errlen, "%s: %s", target, strerror(-e));
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		int lss = 0;

		if (ioctl(fd, BLKGETSIZE64, &size) < 0 || ioctl(fd, BLKSSZGET, &lss) < 0 ||
		    lss <= 0) {
			e = -errno;
			snprintf(err, errlen, "%s: reading the device geometry: %s", target,
			         strerror(errno));
			goto out;
		}
		ss = (uint32_t)lss;
	} else if (S_ISREG(st.st_mode)) {
		char sig[8];

		size = (uint64_t)st.st_size;
		/* An image of a 4Kn disk carries its GPT header at 4096. */
		if (rb_pread_all(fd, sig, 8, 512) == 0 && memcmp(sig, GPT_SIG, 8) != 0 &&
		    rb_pread_all(fd, sig, 8, 4096) == 0 && !memcmp(sig, GPT_SIG, 8))
			ss = 4096;
	} else {
		e = -EINVAL;
		snprintf(err, errlen, "%s: not a block device or regular file", target);
		goto out;
	}
	{
		char why[400];

		e = agent_grow_fd(fd, size, ss, report, replen, why, sizeof(why));
		if (e < 0) {
			snprintf(err, errlen, "%s: %s", target, why);
			goto out;
		}
	}
	if (S_ISBLK(st.st_mode) && ioctl(fd, BLKRRPART) < 0)
		log_warn("%s: the kernel did not re-read the partition table (%s)", target,
		         strerror(errno));
	e = 0;
out:
	if (fd >= 0)
		close(fd);
	return e;
}

int agent_cmd_grow(int argc, char **argv)
{
	char report[256], err[512];

	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		fputs("usage: rackboot-agent grow TARGET\n"
		      "Grows the last partition of TARGET's GPT or MBR to the end of the disk.\n"
		      "Only the partition table changes; the filesystem grows on first boot.\n"
		      "Exit: 0 grown or nothing to do, 1 failure, 2 usage.\n",
		      stdout);
		return 0;
	}
	if (argc != 2 || argv[1][0] == '-') {
		fputs("usage: rackboot-agent grow TARGET\n", stderr);
		return 2;
	}
	if (agent_grow_last_partition(argv[1], report, sizeof(report), err, sizeof(err)) < 0) {
		fprintf(stderr, "rackboot-agent grow: failed: %s\n", err);
		return 1;
	}
	printf("%s: %s\n", argv[1], report);
	return 0;
}
