/* wipe: clearing a disk before it is imaged, between tenants.
 *
 * metadata: zeroes the first and last AGENT_WIPE_EDGE bytes of the disk
 *   (MBR, primary and backup GPT) and of every partition the kernel shows
 *   in /sys/dev/block/<maj:min>/<part>/{start,size}: filesystem, RAID (md
 *   0.90/1.0 at the end, 1.1/1.2 at the start), LVM, LUKS and ZFS labels
 *   live there, so nothing of the old layout is recognised again (a
 *   filesystem's secondary superblocks in the middle stay; metadata is
 *   about the next boot not assembling or mounting the old disk, "full" is
 *   about the old data). Then BLKRRPART so the kernel forgets the old
 *   partitions (EBUSY/EINVAL, e.g. a partition in use or a loop device
 *   without partition scanning, is a warning, not a failure).
 * full: every byte. BLKSECDISCARD where the device supports it (the device
 *   erases every copy, its flash spare area included). Otherwise BLKZEROOUT,
 *   in which the kernel uses the device's WRITE ZEROES (or unmap that
 *   guarantees zeros) where queue/write_zeroes_max_bytes > 0 and writes
 *   zeros itself otherwise. Plain BLKDISCARD is never used: a discard does
 *   not promise that the old bytes stop being readable (discard_zeroes_data
 *   has read 0 on every device since Linux 4.12). Without BLKZEROOUT the
 *   zeros are written here. Zeroed ranges are read back at sample offsets.
 *   Work goes in AGENT_WIPE_CHUNK steps with a progress call after each.
 * A regular file (a disk image, as in tests) gets the same two modes:
 *   metadata zeroes its head and tail, full punches a hole over the whole
 *   file (FALLOC_FL_PUNCH_HOLE, writing zeros where that is unsupported)
 *   and reads a sample back to prove zeros.
 *
 * Owns the target fd while it runs. Block devices are opened O_EXCL, so a
 * disk with a mounted filesystem (or one held by md/LVM) is refused rather
 * than wiped under its users. Never touches anything but the target. */
#include "agent/wipe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <getopt.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <dirent.h>

#include "common/log.h"
#include "common/util.h"

#define ZBUF        (1024U * 1024)
#define SAMPLES     64
#define SAMPLE_LEN  4096
#define MAX_PARTS   256
#define SYSFS_VALUE 64

struct wipe {
	const char *target;
	int fd;
	bool blk;
	uint64_t size;
	char sysdir[64]; /* /sys/dev/block/M:m of a block device */
	agent_wipe_progress_fn progress;
	void *progress_arg;
	char *err;
	size_t errlen;
};

/* Formats the reason into w->err and returns e. */
static int wfail(struct wipe *w, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int wfail(struct wipe *w, int e, const char *fmt, ...)
{
	va_list ap;

	if (w->err && w->errlen) {
		va_start(ap, fmt);
		vsnprintf(w->err, w->errlen, fmt, ap);
		va_end(ap);
	}
	return e;
}

int agent_wipe_mode_parse(const char *s, enum agent_wipe_mode *ret)
{
	if (!strcmp(s, "none"))
		*ret = AGENT_WIPE_NONE;
	else if (!strcmp(s, "metadata"))
		*ret = AGENT_WIPE_METADATA;
	else if (!strcmp(s, "full"))
		*ret = AGENT_WIPE_FULL;
	else
		return -EINVAL;
	return 0;
}

const char *agent_wipe_mode_name(enum agent_wipe_mode m)
{
	switch (m) {
	case AGENT_WIPE_METADATA:
		return "metadata";
	case AGENT_WIPE_FULL:
		return "full";
	default:
		return "none";
	}
}

static void human(uint64_t b, char *buf, size_t len)
{
	if (b >= (1ULL << 30))
		snprintf(buf, len, "%.1f GiB", (double)b / (double)(1ULL << 30));
	else if (b >= (1ULL << 20))
		snprintf(buf, len, "%.1f MiB", (double)b / (double)(1ULL << 20));
	else
		snprintf(buf, len, "%llu bytes", (unsigned long long)b);
}

/* ---- sysfs ------------------------------------------------------------------- */

/* Reads a small decimal sysfs attribute below dir. */
static int sysfs_u64(const char *dir, const char *name, uint64_t *ret)
{
	char path[PATH_MAX], buf[SYSFS_VALUE];
	long long v;
	ssize_t n;
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (rb_strtonum(buf, 0, INT64_MAX, &v) < 0)
		return -EINVAL;
	*ret = (uint64_t)v;
	return 0;
}

struct range {
	uint64_t off, len;
};

/* The partitions of the disk w->sysdir, as byte ranges; none for a
 * partition itself (its own range is the whole target). */
static int list_partitions(struct wipe *w, struct range *ret, size_t cap, size_t *ret_n)
{
	char dir[PATH_MAX];
	struct dirent *de;
	uint64_t dummy;
	size_t n = 0;
	DIR *d;

	*ret_n = 0;
	if (sysfs_u64(w->sysdir, "partition", &dummy) == 0)
		return 0;
	d = opendir(w->sysdir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		uint64_t start, size;

		if (de->d_name[0] == '.')
			continue;
		if (snprintf(dir, sizeof(dir), "%s/%s", w->sysdir, de->d_name) >= (int)sizeof(dir))
			continue;
		if (sysfs_u64(dir, "partition", &dummy) < 0 ||
		    sysfs_u64(dir, "start", &start) < 0 || sysfs_u64(dir, "size", &size) < 0)
			continue;
		if (start > w->size / 512 || size > w->size / 512 - start)
			continue; /* sysfs counts 512-byte sectors, whatever the device's */
		if (n == cap) {
			closedir(d);
			return -E2BIG;
		}
		ret[n].off = start * 512;
		ret[n].len = size * 512;
		n++;
	}
	closedir(d);
	*ret_n = n;
	return 0;
}

/* ---- writing zeros ------------------------------------------------------------- */

static int write_zeros(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];

	while (len > 0) {
		size_t n = (size_t)RB_MIN(len, (uint64_t)sizeof(zeros));
		int e = rb_pwrite_all(fd, zeros, n, off);

		if (e < 0)
			return e;
		off += n;
		len -= n;
	}
	return 0;
}

/* Reads SAMPLES blocks spread over [0, size) (first and last included) and
 * checks they are zero. */
static int check_zeros(struct wipe *w)
{
	uint8_t buf[SAMPLE_LEN];

	for (unsigned i = 0; i < SAMPLES; i++) {
		uint64_t len = RB_MIN((uint64_t)SAMPLE_LEN, w->size);
		uint64_t off = (w->size - len) / (SAMPLES - 1) * i;
		int e;

		off -= off % 512;
		if (i == SAMPLES - 1)
			off = w->size - len;
		e = rb_pread_all(w->fd, buf, (size_t)len, off);
		if (e < 0)
			return wfail(w, e, "%s: reading back at %llu: %s", w->target,
			             (unsigned long long)off, strerror(-e));
		for (size_t k = 0; k < len; k++)
			if (buf[k])
				return wfail(w, -EIO, "%s: byte %llu is not zero after the wipe",
				             w->target, (unsigned long long)(off + k));
	}
	return 0;
}

static int reread_partitions(struct wipe *w)
{
	if (!w->blk)
		return 0;
	if (ioctl(w->fd, BLKRRPART) == 0)
		return 0;
	if (errno == EBUSY || errno == EINVAL) {
		log_warn("%s: the kernel did not re-read the partition table (%s); it still "
		         "shows the old partitions until the next boot",
		         w->target, strerror(errno));
		return 0;
	}
	return -errno;
}

/* ---- metadata ---------------------------------------------------------------- */

static int zero_edges(struct wipe *w, uint64_t off, uint64_t len, uint64_t *bytes)
{
	uint64_t head = RB_MIN(AGENT_WIPE_EDGE, len);
	uint64_t tail = RB_MIN(AGENT_WIPE_EDGE, len - head);
	int e;

	if ((e = write_zeros(w->fd, off, head)) < 0 ||
	    (e = write_zeros(w->fd, off + len - tail, tail)) < 0)
		return wfail(w, e, "%s: writing zeros at %llu: %s", w->target,
		             (unsigned long long)off, strerror(-e));
	*bytes += head + tail;
	return 0;
}

static int wipe_metadata(struct wipe *w, char *report, size_t replen)
{
	struct range *parts = NULL;
	size_t nparts = 0;
	uint64_t bytes = 0, t0 = rb_now_usec();
	char hb[32];
	int e;

	if (w->blk) {
		parts = calloc(MAX_PARTS, sizeof(*parts));
		if (!parts)
			return -ENOMEM;
		e = list_partitions(w, parts, MAX_PARTS, &nparts);
		if (e < 0) {
			rb_errf(w->err, w->errlen, "%s: listing partitions in %s: %s", w->target,
			        w->sysdir, strerror(-e));
			goto out;
		}
	}
	if ((e = zero_edges(w, 0, w->size, &bytes)) < 0)
		goto out;
	for (size_t i = 0; i < nparts; i++)
		if ((e = zero_edges(w, parts[i].off, parts[i].len, &bytes)) < 0)
			goto out;
	if (fsync(w->fd) < 0) {
		e = -errno;
		rb_errf(w->err, w->errlen, "%s: fsync: %s", w->target, strerror(errno));
		goto out;
	}
	if ((e = reread_partitions(w)) < 0) {
		rb_errf(w->err, w->errlen, "%s: BLKRRPART: %s", w->target, strerror(-e));
		goto out;
	}
	human(bytes, hb, sizeof(hb));
	snprintf(report, replen,
	         "metadata: zeroed the edges of the disk and %zu partition%s "
	         "(%s) in %.1f s",
	         nparts, nparts == 1 ? "" : "s", hb, (double)(rb_now_usec() - t0) / 1e6);
out:
	free(parts);
	return e;
}

/* ---- full -------------------------------------------------------------------- */

enum full_method {
	FULL_SECDISCARD,
	FULL_ZEROOUT,
	FULL_PUNCH,
	FULL_WRITE,
};

/* One step of [off, off+len) by method; -EOPNOTSUPP when the method does
 * not work on this target at all. */
static int full_step(struct wipe *w, enum full_method m, uint64_t off, uint64_t len)
{
	uint64_t r[2] = { off, len };

	switch (m) {
	case FULL_SECDISCARD:
		if (ioctl(w->fd, BLKSECDISCARD, r) == 0)
			return 0;
		break;
	case FULL_ZEROOUT:
		if (ioctl(w->fd, BLKZEROOUT, r) == 0)
			return 0;
		break;
	case FULL_PUNCH:
		if (fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		              (off_t)len) == 0)
			return 0;
		break;
	case FULL_WRITE: {
		int e = write_zeros(w->fd, off, len);

		if (e == 0 && fdatasync(w->fd) < 0)
			e = -errno;
		return e;
	}
	}
	if (errno == EOPNOTSUPP || errno == ENOTTY || (errno == EINVAL && m != FULL_PUNCH))
		return -EOPNOTSUPP;
	return -errno;
}

static const char *method_name(const struct wipe *w, enum full_method m)
{
	uint64_t wz = 0;

	switch (m) {
	case FULL_SECDISCARD:
		return "BLKSECDISCARD";
	case FULL_ZEROOUT:
		if (sysfs_u64(w->sysdir, "queue/write_zeroes_max_bytes", &wz) == 0 && wz > 0)
			return "BLKZEROOUT (write-zeroes offload)";
		return "BLKZEROOUT (kernel wrote zeros)";
	case FULL_PUNCH:
		return "FALLOC_FL_PUNCH_HOLE";
	default:
		return "wrote zeros";
	}
}

static int wipe_full(struct wipe *w, char *report, size_t replen)
{
	enum full_method chain_blk[] = { FULL_SECDISCARD, FULL_ZEROOUT, FULL_WRITE };
	enum full_method chain_file[] = { FULL_PUNCH, FULL_WRITE };
	enum full_method *chain = w->blk ? chain_blk : chain_file;
	size_t nchain = w->blk ? RB_ARRAY_SIZE(chain_blk) : RB_ARRAY_SIZE(chain_file);
	uint64_t off = 0, t0 = rb_now_usec();
	size_t mi = 0;
	char hb[32];
	int e;

	if (w->progress)
		w->progress(w->progress_arg, 0, w->size);
	while (off < w->size) {
		uint64_t len = RB_MIN(AGENT_WIPE_CHUNK, w->size - off);

		e = full_step(w, chain[mi], off, len);
		if (e == -EOPNOTSUPP && off == 0 && mi + 1 < nchain) {
			log_debug("%s: %s not supported, trying the next method", w->target,
			          method_name(w, chain[mi]));
			mi++;
			continue;
		}
		if (e < 0)
			return wfail(w, e, "%s: %s at %llu: %s", w->target,
			             method_name(w, chain[mi]), (unsigned long long)off,
			             strerror(-e));
		off += len;
		if (w->progress)
			w->progress(w->progress_arg, off, w->size);
	}
	if (fsync(w->fd) < 0) {
		e = -errno;
		return wfail(w, e, "%s: fsync: %s", w->target, strerror(-e));
	}
	/* A secure discard erases but does not promise what reads back. */
	if (chain[mi] != FULL_SECDISCARD && (e = check_zeros(w)) < 0)
		return e;
	if ((e = reread_partitions(w)) < 0)
		return wfail(w, e, "%s: BLKRRPART: %s", w->target, strerror(-e));
	human(w->size, hb, sizeof(hb));
	snprintf(report, replen, "full: %s %s in %.1f s", method_name(w, chain[mi]), hb,
	         (double)(rb_now_usec() - t0) / 1e6);
	return 0;
}

/* ---- entry point --------------------------------------------------------------- */

static int open_target(struct wipe *w)
{
	struct stat st;
	int fd;

	fd = open(w->target, O_RDWR | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISBLK(st.st_mode)) {
		/* Again, exclusively: a mounted or assembled disk is refused. */
		close(fd);
		fd = open(w->target, O_RDWR | O_CLOEXEC | O_EXCL);
		if (fd < 0 && errno == EBUSY)
			return wfail(w, -EBUSY,
			             "%s: device is in use (mounted, or part of md/LVM); "
			             "not wiping it",
			             w->target);
	}
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = -errno;

		if (fd >= 0)
			close(fd);
		return wfail(w, e, "%s: %s", w->target, strerror(-e));
	}
	w->fd = fd;
	w->blk = S_ISBLK(st.st_mode);
	if (w->blk) {
		snprintf(w->sysdir, sizeof(w->sysdir), "/sys/dev/block/%u:%u", major(st.st_rdev),
		         minor(st.st_rdev));
		if (ioctl(fd, BLKGETSIZE64, &w->size) < 0)
			return wfail(w, -errno, "%s: BLKGETSIZE64: %s", w->target, strerror(errno));
	} else if (S_ISREG(st.st_mode)) {
		w->size = (uint64_t)st.st_size;
	} else {
		return wfail(w, -EINVAL, "%s: not a block device or regular file", w->target);
	}
	return 0;
}

int agent_wipe(const char *target, enum agent_wipe_mode mode, agent_wipe_progress_fn progress,
               void *progress_arg, char *report, size_t replen, char *err, size_t errlen)
{
	struct wipe w = { .target = target,
		          .fd = -1,
		          .progress = progress,
		          .progress_arg = progress_arg,
		          .err = err,
		          .errlen = errlen };
	int e;

	if (mode == AGENT_WIPE_NONE) {
		snprintf(report, replen, "none: nothing wiped");
		return 0;
	}
	e = open_target(&w);
	if (e == 0 && w.size == 0)
		snprintf(report, replen, "%s: %s is empty", agent_wipe_mode_name(mode), target);
	else if (e == 0 && mode == AGENT_WIPE_METADATA)
		e = wipe_metadata(&w, report, replen);
	else if (e == 0)
		e = wipe_full(&w, report, replen);
	if (w.fd >= 0)
		close(w.fd);
	return e;
}

/* ---- the command ------------------------------------------------------------- */

static void progress_line(void *arg, uint64_t done, uint64_t total)
{
	char a[32], b[32];

	human(done, a, sizeof(a));
	human(total, b, sizeof(b));
	fprintf(stderr, "wipe: %s / %s\n", a, b);
}

static void usage(FILE *o)
{
	fputs("usage: rackboot-agent wipe --mode none|metadata|full [-q] TARGET\n"
	      "Wipes TARGET (a block device or a disk image file).\n"
	      "  metadata  zero the first and last MiB of the disk and of each partition\n"
	      "  full      erase every byte (secure discard, write-zeroes or zeros)\n"
	      "  -q        no progress lines on stderr\n"
	      "Exit: 0 wiped (what was done on stdout), 1 failure, 2 usage.\n",
	      o);
}

int agent_cmd_wipe(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	enum agent_wipe_mode mode = AGENT_WIPE_NONE;
	bool have_mode = false, quiet = false;
	char report[256], err[512];
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "m:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (agent_wipe_mode_parse(optarg, &mode) < 0) {
				fputs("rackboot-agent wipe: --mode: none, metadata or full\n",
				      stderr);
				return 2;
			}
			have_mode = true;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!have_mode || optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	if (agent_wipe(argv[optind], mode, quiet ? NULL : progress_line, NULL, report,
	               sizeof(report), err, sizeof(err)) < 0) {
		fprintf(stderr, "rackboot-agent wipe: failed: %s\n", err);
		return 1;
	}
	printf("%s: %s\n", argv[optind], report);
	return 0;
}
