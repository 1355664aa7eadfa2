/* rackboot-image: builds, captures, signs, verifies and publishes images
 * and package archives in a repository. Thin dispatch: every subcommand
 * parses its options and calls the rbimager library.
 * Exit codes: 0 ok, 1 failure (the message says what to do), 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/fs.h>

#include "chunker.h"
#include "common/log.h"
#include "common/util.h"
#include "extract.h"
#include "initramfs.h"
#include "pkg.h"
#include "plain.h"
#include "report.h"
#include "verify.h"

#define MAX_PUBS 8

struct opts {
	const char *repo, *key, *name, *version, *meta, *out;
	const char *pubs[MAX_PUBS];
	size_t n_pubs;
	uint32_t chunk_size;
	int level;
	uint64_t pack_size;
	unsigned threads;
	long long min_age;
	bool quiet;
	unsigned allow; /* pkg build --allow (IMG_PKG_ALLOW_*) */
	bool reboot;    /* pkg build --reboot-required */
};

static const char usage_text[] =
        "usage: rackboot-image COMMAND [OPTIONS] [ARGS]\n"
        "  keygen DIR/NAME                  write NAME.key (private) and NAME.pub\n"
        "  build --repo R --key K --name N --version V [--chunk-size S] [--level L]\n"
        "        [--pack-size S] [--threads T] IMAGE   raw disk image into the repository\n"
        "  capture --repo R --key K --name N --version V [...] /dev/DEVICE\n"
        "  sign --key K FILE...              write FILE.sig (detached Ed25519)\n"
        "  verify --repo R --pub P [--pub P2] [NAME VERSION]   all images when none given\n"
        "  ls --repo R                       images, sizes, stored bytes, shared chunks\n"
        "  diff --repo R NAME V1 V2          what a node fetches to go from V1 to V2\n"
        "  rm --repo R --key K NAME VERSION  (the catalogue is re-signed)\n"
        "  gc --repo R [--min-age SECONDS]   delete unreferenced packs (default age 3600)\n"
        "  extract --repo R --pub P NAME VERSION OUT\n"
        "  register --repo R --key K --name N --version V FILE   plain .img/.img.zst/.tar.*\n"
        "  pkg build DIR --meta META.json --out FILE.tar.zst [--allow setuid,devices,fifos]\n"
        "        [--reboot-required]        what the agent may create; a change needs a reboot\n"
        "  pkg index --repo R --key K PKG...\n"
        "  initramfs -o FILE --trust KEY.pub [--trust K2.pub] [--agent PATH] [--busybox PATH]\n"
        "        [--kernel-dir ROOT] [--kernel-version V] [--modules [+]M1,M2 | --no-modules]\n"
        "        [--firmware-dir DIR] [--file SRC:/DEST] [--tool PATH | --no-tools]\n"
        "        [--compress gzip|zstd] [--level L]\n"
        "                                   the boot initramfs of rackboot-agent\n"
        "Sizes take K/M/G suffixes. Exit codes: 0 ok, 1 failure, 2 usage.\n";

static int usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "rackboot-image: %s\n", msg);
	fputs(usage_text, stderr);
	return 2;
}

static int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	char num[32];
	size_t n = strlen(s);
	uint64_t mult = 1;
	long long v;

	if (n == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, n + 1);
	switch (num[n - 1]) {
	case 'k':
	case 'K':
		mult = 1024;
		break;
	case 'm':
	case 'M':
		mult = 1024 * 1024;
		break;
	case 'g':
	case 'G':
		mult = 1024 * 1024 * 1024;
		break;
	default:
		break;
	}
	if (mult > 1)
		num[n - 1] = '\0';
	if (rb_strtonum(num, 0, (long long)(max / mult), &v) < 0)
		return -EINVAL;
	if ((uint64_t)v * mult < min)
		return -ERANGE;
	*ret = (uint64_t)v * mult;
	return 0;
}

/* Parses options; returns the index of the first positional argument or -1. */
static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = { { "repo", required_argument, NULL, 'r' },
		                            { "key", required_argument, NULL, 'k' },
		                            { "pub", required_argument, NULL, 'p' },
		                            { "name", required_argument, NULL, 'n' },
		                            { "version", required_argument, NULL, 'v' },
		                            { "chunk-size", required_argument, NULL, 'c' },
		                            { "level", required_argument, NULL, 'l' },
		                            { "pack-size", required_argument, NULL, 's' },
		                            { "threads", required_argument, NULL, 't' },
		                            { "min-age", required_argument, NULL, 'a' },
		                            { "meta", required_argument, NULL, 'm' },
		                            { "out", required_argument, NULL, 'o' },
		                            { "quiet", no_argument, NULL, 'q' },
		                            { "allow", required_argument, NULL, 'A' },
		                            { "reboot-required", no_argument, NULL, 'B' },
		                            { "help", no_argument, NULL, 'h' },
		                            { NULL, 0, NULL, 0 } };
	uint64_t v;
	long long n;
	int c;

	o->chunk_size = IMG_DEFAULT_CHUNK_SIZE;
	o->level = IMG_DEFAULT_LEVEL;
	o->pack_size = IMG_DEFAULT_PACK_SIZE;
	o->min_age = 3600;
	optind = 1;
	while ((c = getopt_long(argc, argv, "r:k:p:n:v:c:l:s:t:a:m:o:qh", lo, NULL)) != -1) {
		switch (c) {
		case 'r':
			o->repo = optarg;
			break;
		case 'k':
			o->key = optarg;
			break;
		case 'n':
			o->name = optarg;
			break;
		case 'v':
			o->version = optarg;
			break;
		case 'm':
			o->meta = optarg;
			break;
		case 'o':
			o->out = optarg;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'p':
			if (o->n_pubs == MAX_PUBS) {
				usage("at most 8 --pub keys");
				return -1;
			}
			o->pubs[o->n_pubs++] = optarg;
			break;
		case 'c':
			if (parse_size(optarg, IMG_CHUNK_SIZE_MIN, IMG_CHUNK_SIZE_MAX, &v) < 0 ||
			    (v & (v - 1)) != 0) {
				usage("--chunk-size: a power of two from 4K to 16M");
				return -1;
			}
			o->chunk_size = (uint32_t)v;
			break;
		case 's':
			if (parse_size(optarg, 1, 1ULL << 40, &v) < 0) {
				usage("--pack-size: a size such as 16M");
				return -1;
			}
			o->pack_size = v;
			break;
		case 'l':
			if (rb_strtonum(optarg, 1, 19, &n) < 0) {
				usage("--level: 1..19");
				return -1;
			}
			o->level = (int)n;
			break;
		case 't':
			if (rb_strtonum(optarg, 1, 256, &n) < 0) {
				usage("--threads: 1..256");
				return -1;
			}
			o->threads = (unsigned)n;
			break;
		case 'a':
			if (rb_strtonum(optarg, 0, 1LL << 40, &o->min_age) < 0) {
				usage("--min-age: seconds");
				return -1;
			}
			break;
		case 'A': {
			char why[160];
			unsigned bits;

			if (img_pkg_allow_parse(optarg, &bits, why, sizeof(why)) < 0) {
				fprintf(stderr, "rackboot-image: --allow: %s\n", why);
				return -1;
			}
			o->allow |= bits;
			break;
		}
		case 'B':
			o->reboot = true;
			break;
		case 'h':
			usage(NULL);
			return -1;
		default:
			usage(NULL);
			return -1;
		}
	}
	return optind;
}

static int fail(const char *what, const char *msg)
{
	fprintf(stderr, "rackboot-image %s: %s\n", what, msg);
	return 1;
}

static int load_pubs(const struct opts *o, struct rb_key **keys)
{
	char err[PATH_MAX + 64];
	int e = rb_keys_load_public((const char *const *)o->pubs, o->n_pubs, keys, err,
	                            sizeof(err));

	if (e < 0)
		fprintf(stderr, "rackboot-image: public key %s (make one with keygen)\n", err);
	return e;
}

static int load_priv(const char *path, struct rb_key **ret)
{
	int e = rb_key_load_private(path, ret);

	if (e < 0)
		fprintf(stderr, "rackboot-image: private key %s: %s (make one with keygen)\n", path,
		        strerror(-e));
	return e;
}

static int progress_mode(const struct opts *o)
{
	return o->quiet ? 0 : isatty(STDERR_FILENO) ? 2 : 1;
}

static int cmd_keygen(int argc, char **argv)
{
	char priv[4096], pub[4096];
	int e;

	if (argc != 2)
		return usage("keygen DIR/NAME");
	snprintf(priv, sizeof(priv), "%s.key", argv[1]);
	snprintf(pub, sizeof(pub), "%s.pub", argv[1]);
	e = rb_sign_keygen(priv, pub);
	if (e == -EEXIST)
		return fail("keygen",
		            "key files exist already: pick another name (never overwritten)");
	if (e < 0)
		return fail("keygen", strerror(-e));
	printf("wrote %s (private, keep it secret) and %s (give it to servers and agents)\n", priv,
	       pub);
	return 0;
}

static int cmd_build(int argc, char **argv, bool capture)
{
	const char *what = capture ? "capture" : "build";
	struct opts o = { 0 };
	struct img_build_opts bo;
	struct img_build_stats st;
	struct img_repo *r = NULL;
	struct rb_key *key = NULL;
	struct stat sb;
	uint64_t size;
	char err[1024];
	int i, fd, e, rc = 1;

	i = parse_opts(argc, argv, &o);
	if (i < 0)
		return 2;
	if (!o.repo || !o.key || !o.name || !o.version || argc - i != 1)
		return usage(capture ? "capture --repo R --key K --name N --version V /dev/DEVICE"
		                     : "build --repo R --key K --name N --version V IMAGE");
	if (!img_name_is_valid(o.name) || !img_name_is_valid(o.version))
		return usage("--name and --version: [A-Za-z0-9._+-]{1,64}, not starting with '.'");
	fd = open(argv[i], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0) {
		snprintf(err, sizeof(err), "%s: %s", argv[i], strerror(errno));
		return fail(what, err);
	}
	if (capture != S_ISBLK(sb.st_mode) || (!capture && !S_ISREG(sb.st_mode))) {
		snprintf(err, sizeof(err), "%s: %s", argv[i],
		         capture ? "not a block device (use build for image files)"
		                 : "not a regular file (use capture for block devices)");
		close(fd);
		return fail(what, err);
	}
	if (capture) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			snprintf(err, sizeof(err), "%s: BLKGETSIZE64: %s", argv[i],
			         strerror(errno));
			close(fd);
			return fail(what, err);
		}
	} else {
		size = (uint64_t)sb.st_size;
	}
	/* Before anything touches the repository. */
	if (img_check_raw_input(fd, err, sizeof(err)) < 0) {
		close(fd);
		return fail(what, err);
	}
	if (load_priv(o.key, &key) < 0)
		goto out;
	e = img_repo_open(o.repo, true, &r);
	if (e < 0) {
		snprintf(err, sizeof(err), "repository %s: %s", o.repo, strerror(-e));
		fail(what, err);
		goto out;
	}
	bo.name = o.name;
	bo.version = o.version;
	bo.chunk_size = o.chunk_size;
	bo.level = o.level;
	bo.pack_size = o.pack_size;
	bo.threads = o.threads;
	bo.progress = progress_mode(&o);
	e = img_build(r, key, &bo, fd, size, !capture, &st, err, sizeof(err));
	if (e < 0) {
		fail(what, err);
		goto out;
	}
	printf("published %s %s: disk %llu bytes, data %llu, stored %llu (new %llu), %llu chunks "
	       "(%llu zero, %llu deduplicated), %llu new packs, %.1f s, %.1f MB/s\n",
	       o.name, o.version, (unsigned long long)st.disk_size,
	       (unsigned long long)st.data_bytes, (unsigned long long)st.stored_total,
	       (unsigned long long)st.stored_new, (unsigned long long)st.chunks,
	       (unsigned long long)st.chunks_zero, (unsigned long long)st.chunks_dedup,
	       (unsigned long long)st.packs_new, st.seconds,
	       st.seconds > 0 ? (double)st.disk_size / st.seconds / 1e6 : 0.0);
	rc = 0;
out:
	close(fd);
	rb_key_free(key);
	img_repo_free(r);
	return rc;
}

static int cmd_sign(int argc, char **argv)
{
	struct opts o = { 0 };
	struct rb_key *key = NULL;
	int i, rc = 0;

	i = parse_opts(argc, argv, &o);
	if (i < 0)
		return 2;
	if (!o.key || i >= argc)
		return usage("sign --key K FILE...");
	if (load_priv(o.key, &key) < 0)
		return 1;
	for (; i < argc && rc == 0; i++) {
		char sig[90], path[4096], tmp[4100];
		int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
		struct stat st;
		char *buf = NULL;
		FILE *f;

		if (fd < 0 || fstat(fd, &st) < 0 || !(buf = malloc((size_t)st.st_size + 1)) ||
		    read(fd, buf, (size_t)st.st_size) != st.st_size ||
		    rb_sign(key, buf, (size_t)st.st_size, sig) < 0) {
			rc = fail("sign", argv[i]);
		} else {
			snprintf(path, sizeof(path), "%s.sig", argv[i]);
			snprintf(tmp, sizeof(tmp), "%s.tmp", path);
			f = fopen(tmp, "we");
			if (!f || fputs(sig, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) < 0 ||
			    fclose(f) != 0 || rename(tmp, path) < 0)
				rc = fail("sign", path);
			else
				printf("wrote %s\n", path);
		}
		free(buf);
		if (fd >= 0)
			close(fd);
	}
	rb_key_free(key);
	return rc;
}

struct verify_ctx {
	const struct rb_key *const *pubs;
	size_t n_pubs;
	int bad;
};

static void report_err(const char *msg, void *arg)
{
	(void)arg;
	fprintf(stderr, "verify: %s\n", msg);
}

static int verify_one(struct img_repo *r, const char *name, const char *version, void *arg)
{
	struct verify_ctx *v = arg;
	struct img_verify_stats st;
	int e = img_verify_image(r, v->pubs, v->n_pubs, name, version, report_err, NULL, &st);

	if (e < 0) {
		fprintf(stderr, "FAILED %s %s\n", name, version);
		v->bad++;
	} else {
		printf("OK %s %s: signature valid, %llu chunks (%llu bytes) checked\n", name,
		       version, (unsigned long long)st.chunks_checked,
		       (unsigned long long)st.bytes_checked);
	}
	return 0;
}

static int cmd_verify(int argc, char **argv)
{
	struct opts o = { 0 };
	struct rb_key *keys[MAX_PUBS] = { 0 };
	struct img_repo *r = NULL;
	struct verify_ctx v;
	int i, e, rc = 1;

	i = parse_opts(argc, argv, &o);
	if (i < 0)
		return 2;
	if (!o.repo || o.n_pubs == 0 || (argc - i != 0 && argc - i != 2))
		return usage("verify --repo R --pub P [--pub P2] [NAME VERSION]");
	if (load_pubs(&o, keys) < 0)
		return 1;
	v.pubs = (const struct rb_key *const *)keys;
	v.n_pubs = o.n_pubs;
	v.bad = 0;
	e = img_repo_open(o.repo, false, &r);
	if (e < 0) {
		fprintf(stderr, "rackboot-image verify: repository %s: %s\n", o.repo, strerror(-e));
		goto out;
	}
	if (argc - i == 2) {
		verify_one(r, argv[i], argv[i + 1], &v);
	} else {
		e = img_repo_for_each_image(r, verify_one, &v);
		if (img_verify_catalog(r, v.pubs, v.n_pubs, report_err, NULL) < 0) {
			fprintf(stderr, "FAILED catalog.json\n");
			v.bad++;
		}
	}
	if (v.bad)
		fprintf(stderr,
		        "rackboot-image verify: %d failure(s): rebuild or restore the damaged "
		        "files, or rm the image\n",
		        v.bad);
	rc = v.bad ? 1 : 0;
out:
	for (size_t k = 0; k < o.n_pubs; k++)
		rb_key_free(keys[k]);
	img_repo_free(r);
	return rc;
}

static int open_repo(const char *what, const char *path, struct img_repo **r)
{
	int e = img_repo_open(path, false, r);

	if (e < 0) {
		char err[512];
		snprintf(err, sizeof(err), "repository %s: %s", path, strerror(-e));
		return fail(what, err);
	}
	return 0;
}

static int cmd_simple(int argc, char **argv, const char *what)
{
	struct opts o = { 0 };
	struct img_repo *r = NULL;
	struct rb_key *key = NULL, *keys[MAX_PUBS] = { 0 };
	char err[1024];
	int i, e = 0, rc = 1;
	int n;

	i = parse_opts(argc, argv, &o);
	if (i < 0)
		return 2;
	n = argc - i;
	if (!o.repo)
		return usage("--repo R is required");
	if (strcmp(what, "ls") == 0 && n != 0)
		return usage("ls --repo R");
	if (strcmp(what, "diff") == 0 && n != 3)
		return usage("diff --repo R NAME V1 V2");
	if (strcmp(what, "rm") == 0 && (n != 2 || !o.key))
		return usage("rm --repo R --key K NAME VERSION");
	if (strcmp(what, "gc") == 0 && n != 0)
		return usage("gc --repo R [--min-age SECONDS]");
	if (strcmp(what, "extract") == 0 && (n != 3 || o.n_pubs == 0))
		return usage("extract --repo R --pub P NAME VERSION OUT");
	if (strcmp(what, "register") == 0 && (n != 1 || !o.key || !o.name || !o.version))
		return usage("register --repo R --key K --name N --version V FILE");
	if (strcmp(what, "register") == 0) {
		const char *kind;
		/* Detect before the repository is created or touched. */
		if (img_plain_kind(argv[i], &kind, err, sizeof(err)) < 0)
			return fail(what, err);
	}
	if (o.key && load_priv(o.key, &key) < 0)
		return 1;
	if (o.n_pubs && load_pubs(&o, keys) < 0)
		goto out;
	if (strcmp(what, "register") == 0) {
		e = img_repo_open(o.repo, true, &r);
		if (e < 0) {
			snprintf(err, sizeof(err), "repository %s: %s", o.repo, strerror(-e));
			fail(what, err);
			goto out;
		}
	} else if (open_repo(what, o.repo, &r)) {
		goto out;
	}
	if (strcmp(what, "ls") == 0) {
		e = img_report_ls(r, stdout, err, sizeof(err));
	} else if (strcmp(what, "diff") == 0) {
		e = img_report_diff(r, argv[i], argv[i + 1], argv[i + 2], stdout, err, sizeof(err));
	} else if (strcmp(what, "rm") == 0) {
		e = img_repo_rm(r, key, argv[i], argv[i + 1], err, sizeof(err));
		if (e == 0)
			printf("removed %s %s (run gc to free its unshared packs)\n", argv[i],
			       argv[i + 1]);
	} else if (strcmp(what, "gc") == 0) {
		struct img_gc_stats st;
		e = img_repo_gc(r, o.min_age, &st, err, sizeof(err));
		if (e == 0)
			printf("gc: removed %llu packs (%llu bytes) and %llu staging files; kept "
			       "%llu "
			       "unreferenced packs younger than %lld s or in use\n",
			       (unsigned long long)st.packs_removed,
			       (unsigned long long)st.pack_bytes_removed,
			       (unsigned long long)st.tmp_removed,
			       (unsigned long long)st.packs_kept_young, o.min_age);
	} else if (strcmp(what, "extract") == 0) {
		e = img_extract(r, (const struct rb_key *const *)keys, o.n_pubs, argv[i],
		                argv[i + 1], argv[i + 2], progress_mode(&o), err, sizeof(err));
		if (e == 0)
			printf("extracted %s %s to %s\n", argv[i], argv[i + 1], argv[i + 2]);
	} else if (strcmp(what, "register") == 0) {
		e = img_register_plain(r, key, o.name, o.version, argv[i], err, sizeof(err));
		if (e == 0)
			printf("registered %s %s as plain/%s\n", o.name, o.version,
			       strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i]);
	}
	if (e < 0)
		fail(what, err);
	else
		rc = 0;
out:
	for (size_t k = 0; k < o.n_pubs; k++)
		rb_key_free(keys[k]);
	rb_key_free(key);
	img_repo_free(r);
	return rc;
}

static int cmd_pkg(int argc, char **argv)
{
	struct opts o = { 0 };
	struct rb_key *key = NULL;
	struct img_repo *r = NULL;
	char err[1024];
	int i, e, rc = 1;

	if (argc < 2)
		return usage("pkg build|index ...");
	i = parse_opts(argc - 1, argv + 1, &o);
	if (i < 0)
		return 2;
	i++; /* index into argv */
	if (strcmp(argv[1], "build") == 0) {
		if (argc - i != 1 || !o.meta || !o.out)
			return usage("pkg build DIR --meta META.json --out FILE.tar.zst "
			             "[--allow WORDS] [--reboot-required]");
		e = img_pkg_build(argv[i], o.meta, o.out, o.allow, o.reboot, err, sizeof(err));
		if (e < 0)
			return fail("pkg build", err);
		printf("wrote %s\n", o.out);
		return 0;
	}
	if (strcmp(argv[1], "index") != 0)
		return usage("pkg build|index ...");
	if (argc - i < 1 || !o.repo || !o.key)
		return usage("pkg index --repo R --key K PKG...");
	if (load_priv(o.key, &key) < 0)
		return 1;
	e = img_repo_open(o.repo, true, &r);
	if (e < 0) {
		snprintf(err, sizeof(err), "repository %s: %s", o.repo, strerror(-e));
		fail("pkg index", err);
		goto out;
	}
	e = img_pkg_index(r, key, (const char *const *)argv + i, (size_t)(argc - i), err,
	                  sizeof(err));
	if (e < 0) {
		fail("pkg index", err);
		goto out;
	}
	printf("indexed %d package(s) into %s/catalog.json\n", argc - i, o.repo);
	rc = 0;
out:
	rb_key_free(key);
	img_repo_free(r);
	return rc;
}

static void initramfs_warn(const char *msg, void *arg)
{
	if (!*(bool *)arg)
		fprintf(stderr, "rackboot-image initramfs: warning: %s\n", msg);
}

#define MAX_INITRAMFS_MODULES 256

/* Splits a --modules list (a copy in buf) into names; a leading '+' adds
 * them to the default set. Returns the count or -1. */
static int split_modules(char *buf, const char **names)
{
	size_t n = 0;
	char *p = buf;

	if (*p == '+') {
		for (size_t i = 0; img_initramfs_default_modules[i]; i++)
			names[n++] = img_initramfs_default_modules[i];
		p++;
	}
	while (*p) {
		char *c = strchr(p, ',');
		if (c)
			*c = '\0';
		if (*p) {
			if (n == MAX_INITRAMFS_MODULES)
				return -1;
			names[n++] = p;
		}
		if (!c)
			break;
		p = c + 1;
	}
	return (int)n;
}

static int cmd_initramfs(int argc, char **argv)
{
	static const struct option lo[] = { { "out", required_argument, NULL, 'o' },
		                            { "agent", required_argument, NULL, 'a' },
		                            { "busybox", required_argument, NULL, 'b' },
		                            { "kernel-dir", required_argument, NULL, 'K' },
		                            { "kernel-version", required_argument, NULL, 'V' },
		                            { "modules", required_argument, NULL, 'm' },
		                            { "no-modules", no_argument, NULL, 'N' },
		                            { "firmware-dir", required_argument, NULL, 'F' },
		                            { "trust", required_argument, NULL, 't' },
		                            { "file", required_argument, NULL, 'f' },
		                            { "tool", required_argument, NULL, 'T' },
		                            { "no-tools", no_argument, NULL, 'n' },
		                            { "compress", required_argument, NULL, 'c' },
		                            { "level", required_argument, NULL, 'l' },
		                            { "quiet", no_argument, NULL, 'q' },
		                            { "help", no_argument, NULL, 'h' },
		                            { NULL, 0, NULL, 0 } };
	const char *trust[IMG_INITRAMFS_MAX_KEYS], *files[IMG_INITRAMFS_MAX_FILES];
	const char *tools[IMG_INITRAMFS_MAX_TOOLS];
	const char *modules[MAX_INITRAMFS_MODULES];
	struct img_initramfs_opts o = { 0 };
	struct img_initramfs_stats st;
	char agent[4096], err[2048], *modlist = NULL;
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	bool quiet = false;
	long long v;
	int c, n, rc = 2;

	o.trust = trust;
	o.files = files;
	o.tools = tools;
	o.warn = initramfs_warn;
	o.warn_arg = &quiet;
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:qh", lo, NULL)) != -1) {
		switch (c) {
		case 'o':
			o.out = optarg;
			break;
		case 'a':
			o.agent = optarg;
			break;
		case 'b':
			o.busybox = optarg;
			break;
		case 'K':
			o.kernel_dir = optarg;
			break;
		case 'V':
			o.kernel_version = optarg;
			break;
		case 'm':
			free(modlist);
			modlist = strdup(optarg);
			if (!modlist)
				return fail("initramfs", "out of memory");
			break;
		case 'N':
			o.no_modules = true;
			break;
		case 'F':
			o.firmware_dir = optarg;
			break;
		case 't':
			if (o.n_trust == IMG_INITRAMFS_MAX_KEYS) {
				usage("at most 16 --trust keys");
				goto out;
			}
			trust[o.n_trust++] = optarg;
			break;
		case 'f':
			if (o.n_files == IMG_INITRAMFS_MAX_FILES) {
				usage("at most 64 --file options");
				goto out;
			}
			files[o.n_files++] = optarg;
			break;
		case 'T':
			if (o.n_tools == IMG_INITRAMFS_MAX_TOOLS) {
				usage("at most 64 --tool options");
				goto out;
			}
			tools[o.n_tools++] = optarg;
			break;
		case 'n':
			o.no_tools = true;
			break;
		case 'c':
			if (strcmp(optarg, "zstd") != 0 && strcmp(optarg, "gzip") != 0) {
				usage("--compress: gzip or zstd");
				goto out;
			}
			o.zstd = strcmp(optarg, "zstd") == 0;
			break;
		case 'l':
			if (rb_strtonum(optarg, 1, 19, &v) < 0) {
				usage("--level: 1..9 for gzip, 1..19 for zstd");
				goto out;
			}
			o.level = (int)v;
			break;
		case 'q':
			quiet = true;
			break;
		default:
			usage(c == 'h' ? NULL : "initramfs -o FILE --trust KEY.pub [...]");
			goto out;
		}
	}
	if (optind != argc || !o.out) {
		usage("initramfs -o FILE --trust KEY.pub [...] (no positional arguments)");
		goto out;
	}
	if (!o.zstd && o.level > 9) {
		usage("--level: 1..9 for gzip");
		goto out;
	}
	if (o.no_modules && (modlist || o.kernel_dir || o.kernel_version || o.firmware_dir)) {
		usage("--no-modules excludes --modules, --kernel-dir, --kernel-version and "
		      "--firmware-dir");
		goto out;
	}
	if (modlist) {
		n = split_modules(modlist, modules);
		if (n < 0) {
			usage("--modules: at most 256 names");
			goto out;
		}
		o.modules = modules;
		o.n_modules = (size_t)n;
		o.modules_explicit = true;
	}
	if (sde && rb_strtonum(sde, 0, 1LL << 33, &o.mtime) < 0) {
		usage("SOURCE_DATE_EPOCH: seconds since 1970");
		goto out;
	}
	rc = 1;
	if (!o.agent) {
		if (img_initramfs_default_agent(agent, sizeof(agent)) < 0) {
			fail("initramfs",
			     "no rackboot-agent next to rackboot-image: give --agent PATH");
			goto out;
		}
		o.agent = agent;
	}
	if (img_initramfs_build(&o, &st, err, sizeof(err)) < 0) {
		fail("initramfs", err);
		goto out;
	}
	rc = 0;
	if (quiet)
		goto out;
	printf("wrote %s: %zu entries, %zu files: rackboot-agent (%s), busybox, %zu shared "
	       "libraries, %zu trusted key%s",
	       o.out, st.entries, st.files, o.agent, st.libs, st.keys, st.keys == 1 ? "" : "s");
	if (st.tools)
		printf(", %zu tool%s (%s)", st.tools, st.tools == 1 ? "" : "s", st.tool_names);
	else
		printf(", no tools (rootfs tarballs cannot be installed from it)");
	if (o.no_modules)
		printf(", no kernel modules");
	else
		printf(", %zu kernel modules for %s (%zu built in)", st.modules, st.kernel_version,
		       st.builtin);
	if (o.firmware_dir)
		printf(", %zu firmware files (%zu named by the modules not in %s)", st.firmware,
		       st.firmware_missing, o.firmware_dir);
	printf("; %.1f MiB of contents, %.1f MiB %s\n", (double)st.bytes_in / 1048576.0,
	       (double)st.size / 1048576.0, o.zstd ? "zstd" : "gzip");
	if (!o.no_modules)
		printf("boot it with the kernel %s (its vmlinuz next to it in boot_root)\n",
		       st.kernel_version);
out:
	free(modlist);
	return rc;
}

int main(int argc, char **argv)
{
	const char *cmd;

	rb_log_open("rackboot-image", false, LOG_WARNING);
	if (argc < 2)
		return usage(NULL);
	cmd = argv[1];
	argc--;
	argv++;
	if (strcmp(cmd, "keygen") == 0)
		return cmd_keygen(argc, argv);
	if (strcmp(cmd, "build") == 0)
		return cmd_build(argc, argv, false);
	if (strcmp(cmd, "capture") == 0)
		return cmd_build(argc, argv, true);
	if (strcmp(cmd, "sign") == 0)
		return cmd_sign(argc, argv);
	if (strcmp(cmd, "verify") == 0)
		return cmd_verify(argc, argv);
	if (strcmp(cmd, "pkg") == 0)
		return cmd_pkg(argc, argv);
	if (strcmp(cmd, "initramfs") == 0)
		return cmd_initramfs(argc, argv);
	if (strcmp(cmd, "ls") == 0 || strcmp(cmd, "diff") == 0 || strcmp(cmd, "rm") == 0 ||
	    strcmp(cmd, "gc") == 0 || strcmp(cmd, "extract") == 0 || strcmp(cmd, "register") == 0)
		return cmd_simple(argc, argv, cmd);
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	return usage("unknown command");
}
