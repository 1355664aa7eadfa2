/* agent/efivars.c: Boot#### load options as OVMF and OS installers write
 * them (built here byte by byte: PciRoot/Pci/MAC/IPv4 PXE entries, IPv6,
 * HTTP URI, a disk HD/File entry, the EFI shell's Fv/FvFile), the choice
 * of the network entry for a MAC, garbage and truncated variables
 * refused, and BootNext written into a fixture efivarfs directory. The
 * variables OVMF really wrote (dumped from a QEMU VM, tests/data/efivars)
 * are chosen from too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/efivars.h"

#define GUID "-8be4df61-93ca-11d2-aa0d-00e098032b8c"

static const uint8_t MAC_NODE[6] = { 0x52, 0x54, 0x00, 0xe2, 0x00, 0x22 };
static const uint8_t MAC_OTHER[6] = { 0x52, 0x54, 0x00, 0xe2, 0x00, 0x33 };

struct blob {
	uint8_t b[2048];
	size_t n;
};

static void put(struct blob *x, const void *p, size_t n)
{
	assert_true(x->n + n <= sizeof(x->b));
	memcpy(x->b + x->n, p, n);
	x->n += n;
}

static void put8(struct blob *x, unsigned v)
{
	uint8_t b = (uint8_t)v;

	put(x, &b, 1);
}

static void put16(struct blob *x, unsigned v)
{
	put8(x, v & 0xff);
	put8(x, v >> 8);
}

static void put32(struct blob *x, uint32_t v)
{
	put16(x, v & 0xffff);
	put16(x, v >> 16);
}

static void put_utf16(struct blob *x, const char *s)
{
	for (; *s; s++)
		put16(x, (unsigned char)*s);
	put16(x, 0);
}

static void node(struct blob *x, unsigned type, unsigned sub, const void *payload, size_t n)
{
	put8(x, type);
	put8(x, sub);
	put16(x, (unsigned)(4 + n));
	if (n)
		put(x, payload, n);
}

/* The nodes OVMF puts before a virtio-net NIC at 00:03.0. */
static void pci_nic(struct blob *p)
{
	uint8_t acpi[8] = { 0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0 }; /* PNP0A03, UID 0 */
	uint8_t pci[2] = { 0x0, 0x3 };                            /* function, device */

	node(p, 2, 1, acpi, sizeof(acpi));
	node(p, 1, 1, pci, sizeof(pci));
}

static void mac_node(struct blob *p, const uint8_t mac[6])
{
	uint8_t m[33] = { 0 };

	memcpy(m, mac, 6);
	m[32] = 1; /* IfType: Ethernet */
	node(p, 3, 11, m, sizeof(m));
}

static void ipv4_node(struct blob *p)
{
	uint8_t v4[23] = { 0 }; /* all zero: DHCP, as OVMF writes it */

	node(p, 3, 12, v4, sizeof(v4));
}

static void ipv6_node(struct blob *p)
{
	uint8_t v6[56] = { 0 };

	node(p, 3, 13, v6, sizeof(v6));
}

static void end_node(struct blob *p)
{
	node(p, 0x7f, 0xff, NULL, 0);
}

/* An EFI_LOAD_OPTION with path p and optional data. */
static void load_option(struct blob *x, uint32_t attrs, const char *desc, const struct blob *p,
                        const void *opt, size_t optlen)
{
	x->n = 0;
	put32(x, attrs);
	put16(x, (unsigned)p->n);
	put_utf16(x, desc);
	put(x, p->b, p->n);
	if (optlen)
		put(x, opt, optlen);
}

enum kind { PXE4, PXE6, HTTP4, DISK, SHELL, UIAPP, PXE4_OTHER };

static void entry(struct blob *x, enum kind k, uint32_t attrs)
{
	static const uint8_t fv[16] = { 0xc9, 0xbd, 0xb8, 0x7c, 0xeb, 0xf8, 0x34, 0x4f,
		                        0xaa, 0xea, 0x3e, 0xe4, 0xaf, 0x65, 0x16, 0xa1 };
	static const uint8_t shell[16] = { 0x83, 0xa5, 0x04, 0x7c, 0x3e, 0x9e, 0x1c, 0x4f,
		                           0xad, 0x65, 0xe0, 0x52, 0x68, 0xd0, 0xb4, 0xd1 };
	struct blob p = { .n = 0 };
	char desc[64];

	switch (k) {
	case PXE4:
	case PXE6:
	case HTTP4:
	case PXE4_OTHER: {
		const uint8_t *mac = k == PXE4_OTHER ? MAC_OTHER : MAC_NODE;

		pci_nic(&p);
		mac_node(&p, mac);
		if (k == PXE6)
			ipv6_node(&p);
		else
			ipv4_node(&p);
		if (k == HTTP4)
			node(&p, 3, 24, NULL, 0); /* Uri(): the URL comes from DHCP */
		end_node(&p);
		snprintf(desc, sizeof(desc), "UEFI %s (MAC:%02X%02X%02X%02X%02X%02X)",
		         k == PXE6    ? "PXEv6"
		         : k == HTTP4 ? "HTTPv4"
		                      : "PXEv4",
		         mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
		load_option(x, attrs, desc, &p, NULL, 0);
		return;
	}
	case DISK: {
		uint8_t hd[38] = { 1, 0, 0, 0 }; /* partition 1 */
		static const char file[] = "\\EFI\\debian\\shimx64.efi";
		struct blob f = { .n = 0 };

		hd[4] = 0x00, hd[5] = 0x08;                  /* start LBA 2048 */
		hd[12] = 0x00, hd[13] = 0x00, hd[14] = 0x10; /* 1 MiB sectors */
		for (int i = 0; i < 16; i++)
			hd[20 + i] = (uint8_t)(0xa0 + i); /* partition GUID */
		hd[36] = 2;                               /* GPT */
		hd[37] = 2;                               /* GUID signature */
		node(&p, 4, 1, hd, sizeof(hd));
		put_utf16(&f, file);
		node(&p, 4, 4, f.b, f.n);
		end_node(&p);
		load_option(x, attrs, "debian", &p, NULL, 0);
		return;
	}
	case SHELL:
	case UIAPP:
		node(&p, 4, 7, fv, sizeof(fv));
		node(&p, 4, 6, shell, sizeof(shell));
		end_node(&p);
		load_option(x, attrs, k == SHELL ? "EFI Internal Shell" : "UiApp", &p,
		            "\x4e\xac\x08\x81\x11\x9f\x59\x4d\x85\x0e\xe2\x1a\x52\x2c\x59\xb2", 16);
		return;
	}
}

static int parse(const struct blob *x, struct agent_efi_load_option *o, char *err, size_t n)
{
	return agent_efi_load_option_parse(x->b, x->n, o, err, n);
}

static void test_parse_entries(void **state)
{
	struct agent_efi_load_option o;
	struct blob x;
	char err[256];

	(void)state;
	entry(&x, PXE4, 1);
	assert_int_equal(parse(&x, &o, err, sizeof(err)), 0);
	assert_int_equal(o.attributes, 1);
	assert_string_equal(o.description, "UEFI PXEv4 (MAC:525400E20022)");
	assert_string_equal(o.path,
	                    "PciRoot(0x0)/Pci(0x3,0x0)/MAC(525400e20022,0x1)/IPv4(0.0.0.0)");
	assert_true(o.has_mac && o.ipv4 && !o.ipv6 && !o.uri);
	assert_memory_equal(o.mac, MAC_NODE, 6);

	entry(&x, HTTP4, 1);
	assert_int_equal(parse(&x, &o, err, sizeof(err)), 0);
	assert_true(o.has_mac && o.ipv4 && o.uri);
	assert_string_equal(o.path,
	                    "PciRoot(0x0)/Pci(0x3,0x0)/MAC(525400e20022,0x1)/IPv4(0.0.0.0)/Uri()");

	entry(&x, PXE6, 1);
	assert_int_equal(parse(&x, &o, err, sizeof(err)), 0);
	assert_true(o.has_mac && !o.ipv4 && o.ipv6);

	entry(&x, DISK, 1);
	assert_int_equal(parse(&x, &o, err, sizeof(err)), 0);
	assert_string_equal(o.description, "debian");
	assert_string_equal(o.path, "HD(1,a3a2a1a0-a5a4-a7a6-a8a9-aaabacadaeaf,GPT)/"
	                            "File(\\EFI\\debian\\shimx64.efi)");
	assert_false(o.has_mac);

	entry(&x, SHELL, 1); /* with 16 bytes of optional data after the path */
	assert_int_equal(parse(&x, &o, err, sizeof(err)), 0);
	assert_string_equal(o.path, "Fv(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/"
	                            "FvFile(7c04a583-9e3e-4f1c-ad65-e05268d0b4d1)");
}

/* Every way a variable can lie about its sizes is refused with what was
 * wrong; no read outside it (ASan in CI). */
static void test_parse_garbage(void **state)
{
	struct agent_efi_load_option o;
	struct blob x, p = { .n = 0 };
	char err[256];

	(void)state;
	assert_int_equal(
	        agent_efi_load_option_parse((const uint8_t *)"\1\0\0", 3, &o, err, sizeof(err)),
	        -EINVAL);
	assert_non_null(strstr(err, "truncated"));

	/* every truncation of a good entry */
	entry(&x, PXE4, 1);
	for (size_t n = 0; n < x.n; n++) {
		memset(err, 0, sizeof(err));
		assert_int_equal(agent_efi_load_option_parse(x.b, n, &o, err, sizeof(err)),
		                 -EINVAL);
		assert_true(err[0] != '\0');
	}

	/* description never terminated */
	x.n = 0;
	put32(&x, 1);
	put16(&x, 4);
	put16(&x, 'A');
	put16(&x, 'B');
	assert_int_equal(parse(&x, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not NUL-terminated"));

	/* FilePathListLength beyond the variable (overlong) */
	entry(&x, PXE4, 1);
	x.b[4] = 0xff;
	x.b[5] = 0x7f;
	assert_int_equal(parse(&x, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "FilePathListLength 32767"));

	/* FilePathListLength too small for one node */
	x.b[4] = 2;
	x.b[5] = 0;
	assert_int_equal(parse(&x, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "FilePathListLength 2"));

	/* a node of length 0 (a naive walker loops forever on it) */
	p.n = 0;
	pci_nic(&p);
	put8(&p, 3);
	put8(&p, 11);
	put16(&p, 0);
	end_node(&p);
	load_option(&x, 1, "zero", &p, NULL, 0);
	assert_int_equal(parse(&x, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "claims 0 bytes"));

	/* a node claiming more than is left */
	p.n = 0;
	pci_nic(&p);
	put8(&p, 3);
	put8(&p, 11);
	put16(&p, 400);
	end_node(&p);
	load_option(&x, 1, "long", &p, NULL, 0);
	assert_int_equal(parse(&x, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "claims 400 bytes"));

	/* a MAC node too short for its address */
	p.n = 0;
	pci_nic(&p);
	node(&p, 3, 11, MAC_NODE, 6);
	end_node(&p);
	load_option(&x, 1, "short mac", &p, NULL, 0);
	assert_int_equal(parse(&x, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "MAC node at offset 18 is 10 bytes, must be 37"));

	/* no End node */
	p.n = 0;
	pci_nic(&p);
	mac_node(&p, MAC_NODE);
	load_option(&x, 1, "endless", &p, NULL, 0);
	assert_int_equal(parse(&x, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no End node"));

	/* random bytes and random mutations of good entries: no crash */
	uint32_t seed = 12345;
	for (int i = 0; i < 20000; i++) {
		entry(&x, (enum kind)(i % 7), 1);
		for (int m = 0; m < 1 + i % 4; m++) {
			seed = seed * 1103515245u + 12345u;
			x.b[(seed >> 8) % x.n] = (uint8_t)(seed >> 24);
		}
		if (i % 5 == 0)
			x.n = (seed >> 4) % (x.n + 1);
		(void)parse(&x, &o, err, sizeof(err));
	}
}

static size_t build_list(struct agent_efi_boot_entry *l, const enum kind *kinds,
                         const uint32_t *attrs, size_t n)
{
	char err[256];

	for (size_t i = 0; i < n; i++) {
		struct blob x;

		entry(&x, kinds[i], attrs ? attrs[i] : 1);
		l[i].num = (uint16_t)i;
		l[i].order = (int)i;
		assert_int_equal(parse(&x, &l[i].opt, err, sizeof(err)), 0);
	}
	return n;
}

static void test_choose(void **state)
{
	struct agent_efi_boot_entry l[8];
	char why[512];
	size_t pick = 99;

	(void)state;
	/* OVMF's order: UiApp, disk, another NIC's PXE, HTTP, PXEv6, PXEv4, shell */
	static const enum kind all[] = { UIAPP, DISK, PXE4_OTHER, HTTP4, PXE6, PXE4, SHELL };
	static const uint32_t all_attrs[] = { 0x109, 1, 1, 1, 1, 1, 1 };
	size_t n = build_list(l, all, all_attrs, 7);

	assert_int_equal(agent_efi_choose_netboot(l, n, MAC_NODE, &pick, why, sizeof(why)), 0);
	assert_int_equal(pick, 5);
	assert_non_null(strstr(why, "PXE over IPv4"));

	/* no IPv4 PXE: HTTP over IPv4 before PXEv6 */
	static const enum kind no_pxe4[] = { DISK, PXE6, HTTP4, SHELL };
	n = build_list(l, no_pxe4, NULL, 4);
	assert_int_equal(agent_efi_choose_netboot(l, n, MAC_NODE, &pick, why, sizeof(why)), 0);
	assert_int_equal(pick, 2);
	assert_non_null(strstr(why, "HTTP boot over IPv4"));

	/* IPv6 only, when nothing else */
	static const enum kind v6[] = { DISK, PXE6 };
	n = build_list(l, v6, NULL, 2);
	assert_int_equal(agent_efi_choose_netboot(l, n, MAC_NODE, &pick, why, sizeof(why)), 0);
	assert_int_equal(pick, 1);
	assert_non_null(strstr(why, "IPv6"));

	/* an inactive PXEv4 loses to an active HTTPv4; alone, it is taken */
	static const enum kind two[] = { PXE4, HTTP4 };
	static const uint32_t inactive_first[] = { 0, 1 };
	n = build_list(l, two, inactive_first, 2);
	assert_int_equal(agent_efi_choose_netboot(l, n, MAC_NODE, &pick, why, sizeof(why)), 0);
	assert_int_equal(pick, 1);
	n = build_list(l, two, inactive_first, 1);
	assert_int_equal(agent_efi_choose_netboot(l, n, MAC_NODE, &pick, why, sizeof(why)), 0);
	assert_int_equal(pick, 0);
	assert_non_null(strstr(why, "inactive"));

	/* two equal entries: the first in BootOrder */
	static const enum kind dup[] = { DISK, PXE4, PXE4 };
	n = build_list(l, dup, NULL, 3);
	assert_int_equal(agent_efi_choose_netboot(l, n, MAC_NODE, &pick, why, sizeof(why)), 0);
	assert_int_equal(pick, 1);

	/* only another NIC's entry, disks, shells: none, and why names them */
	static const enum kind none[] = { DISK, PXE4_OTHER, SHELL };
	n = build_list(l, none, NULL, 3);
	assert_int_equal(agent_efi_choose_netboot(l, n, MAC_NODE, &pick, why, sizeof(why)),
	                 -ENOENT);
	assert_string_equal(why, "no boot entry for MAC 52:54:00:e2:00:22 among 3: Boot0000 "
	                         "debian, Boot0001 UEFI PXEv4 (MAC:525400E20033), Boot0002 EFI "
	                         "Internal Shell");
	/* the same NIC, seen from the other MAC */
	assert_int_equal(agent_efi_choose_netboot(l, n, MAC_OTHER, &pick, why, sizeof(why)), 0);
	assert_int_equal(pick, 1);

	/* a vendor entry with no MAC in its path: by its description only */
	{
		struct blob p = { .n = 0 }, x;
		char err[256];
		uint8_t ven[20] = { 1, 2, 3 };

		node(&p, 1, 4, ven, sizeof(ven)); /* VenHw */
		end_node(&p);
		load_option(&x, 1, "Network Boot IPv4 MAC 52:54:00:E2:00:22", &p, NULL, 0);
		assert_int_equal(parse(&x, &l[0].opt, err, sizeof(err)), 0);
		load_option(&x, 1, "Network Boot IPv4 MAC 52:54:00:E2:00:33", &p, NULL, 0);
		assert_int_equal(parse(&x, &l[1].opt, err, sizeof(err)), 0);
		assert_int_equal(agent_efi_choose_netboot(l, 2, MAC_NODE, &pick, why, sizeof(why)),
		                 0);
		assert_int_equal(pick, 0);
		assert_non_null(strstr(why, "description"));
		assert_int_equal(
		        agent_efi_choose_netboot(l + 1, 1, MAC_NODE, &pick, why, sizeof(why)),
		        -ENOENT);
	}
}

/* ---- a fixture efivarfs directory ------------------------------------------------------ */

static void write_var(const char *dir, const char *name, uint32_t attrs, const void *data, size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s" GUID, dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(&attrs, 4, 1, f), 1);
	if (n)
		assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static size_t read_var(const char *dir, const char *name, uint8_t *buf, size_t cap)
{
	char path[512];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s" GUID, dir, name);
	f = fopen(path, "rb");
	if (!f)
		return 0;
	n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];

	if (!d)
		return;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			int fd;
			int flags = 0;

			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			fd = open(path, O_RDONLY);
			if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 &&
			    (flags & FS_IMMUTABLE_FL)) {
				flags &= ~FS_IMMUTABLE_FL;
				(void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
			}
			if (fd >= 0)
				close(fd);
			unlink(path);
		}
	closedir(d);
	rmdir(dir);
}

/* Boot0000 UiApp, 0001 disk, 0002 PXEv4 of another NIC, 0003 ours,
 * 0004 HTTPv4, 0005 shell, 0007 garbage; BootOrder 1,2,3,4,5,0. */
static void make_fixture(char *dir)
{
	static const uint16_t order[] = { 1, 2, 3, 4, 5, 0 };
	static const enum kind kinds[] = { UIAPP, DISK, PXE4_OTHER, PXE4, HTTP4, SHELL };

	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < 6; i++) {
		struct blob x;
		char name[16];

		entry(&x, kinds[i], i == 0 ? 0x109 : 1);
		snprintf(name, sizeof(name), "Boot%04zX", i);
		write_var(dir, name, 7, x.b, x.n);
	}
	write_var(dir, "Boot0007", 7, "\x01\x00\x00\x00\xff\xff", 6);
	write_var(dir, "BootOrder", 7, order, sizeof(order));
	write_var(dir, "boot0008", 7, "x", 1); /* not an entry: lower case */
}

static void test_fixture_bootnext(void **state)
{
	char dir[] = "/tmp/rb-efivars.XXXXXX", msg[1024];
	uint8_t got[64];
	int e;

	(void)state;
	make_fixture(dir);

	/* dry run: chosen, nothing written */
	e = agent_efi_netboot_next(dir, MAC_NODE, true, msg, sizeof(msg));
	assert_int_equal(e, 0);
	assert_non_null(strstr(msg, "BootNext = Boot0003 (UEFI PXEv4 (MAC:525400E20022)), not "
	                            "written (dry run)"));
	assert_int_equal(read_var(dir, "BootNext", got, sizeof(got)), 0);

	e = agent_efi_netboot_next(dir, MAC_NODE, false, msg, sizeof(msg));
	assert_int_equal(e, 0);
	assert_non_null(strstr(msg, "BootNext = Boot0003 (UEFI PXEv4 (MAC:525400E20022)), "
	                            "written to efivarfs (PXE over IPv4"));
	assert_int_equal(read_var(dir, "BootNext", got, sizeof(got)), 6);
	assert_memory_equal(got, "\x07\x00\x00\x00\x03\x00", 6);

	/* an existing BootNext, immutable as efivarfs may mark it: rewritten,
	 * and immutable again after (where this file system has the flag) */
	{
		char path[512];
		int fd, flags = 0, immut = 0;

		write_var(dir, "BootNext", 7, "\x01\x00", 2);
		snprintf(path, sizeof(path), "%s/BootNext" GUID, dir);
		fd = open(path, O_RDONLY);
		assert_true(fd >= 0);
		if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
			flags |= FS_IMMUTABLE_FL;
			immut = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
		}
		close(fd);
		if (immut) /* the flag really stops a plain write */
			assert_true(open(path, O_WRONLY) < 0 && errno == EPERM);
		e = agent_efi_netboot_next(dir, MAC_NODE, false, msg, sizeof(msg));
		assert_int_equal(e, 0);
		assert_int_equal(read_var(dir, "BootNext", got, sizeof(got)), 6);
		assert_memory_equal(got, "\x07\x00\x00\x00\x03\x00", 6);
		if (immut) {
			fd = open(path, O_RDONLY);
			assert_int_equal(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0);
			assert_true(flags & FS_IMMUTABLE_FL);
			close(fd);
		} else {
			print_message(
			        "(no FS_IMMUTABLE_FL on this file system: that case not run)\n");
		}
	}

	/* another NIC: no entry; the garbage one is named as skipped */
	{
		static const uint8_t mac3[6] = { 0x52, 0x54, 0x00, 0, 0, 0x99 };

		e = agent_efi_netboot_next(dir, mac3, false, msg, sizeof(msg));
		assert_int_equal(e, -ENOENT);
		assert_non_null(strstr(msg, "no boot entry for MAC 52:54:00:00:00:99 among 6"));
		assert_non_null(strstr(msg, "skipped Boot0007: load option: description not "
		                            "NUL-terminated"));
	}
	rm_tree(dir);
}

static void test_fixture_bad_vars(void **state)
{
	char dir[] = "/tmp/rb-efivars.XXXXXX", msg[1024];
	int e;

	(void)state;
	make_fixture(dir);
	/* a variable shorter than its attributes */
	write_var(dir, "Boot0003", 7, NULL, 0);
	{
		char path[512];

		snprintf(path, sizeof(path), "%s/Boot0003" GUID, dir);
		assert_int_equal(truncate(path, 2), 0);
	}
	e = agent_efi_netboot_next(dir, MAC_NODE, false, msg, sizeof(msg));
	/* ours unreadable: the HTTPv4 entry of the same NIC is next best */
	assert_int_equal(e, 0);
	assert_non_null(strstr(msg, "BootNext = Boot0004 (UEFI HTTPv4 (MAC:525400E20022))"));

	/* BootOrder of odd length */
	write_var(dir, "BootOrder", 7, "\x01\x00\x02", 3);
	e = agent_efi_netboot_next(dir, MAC_NODE, false, msg, sizeof(msg));
	assert_int_equal(e, -EINVAL);
	assert_non_null(strstr(msg, "BootOrder: 3 bytes"));

	/* a directory that is not there */
	e = agent_efi_netboot_next("/nonexistent/efivars", MAC_NODE, false, msg, sizeof(msg));
	assert_int_equal(e, -ENOENT);
	assert_non_null(strstr(msg, "/nonexistent/efivars"));
	rm_tree(dir);
}

/* The Boot#### variables OVMF wrote in a QEMU VM (virtio-net, MAC
 * 52:54:00:e2:00:22, edk2's own network stack), as efivarfs showed them
 * (tests/data/efivars/ovmf-virtio-net/, see tests/data/efivars/README). */
static void test_ovmf_dump(void **state)
{
	char dir[] = "/tmp/rb-efivars.XXXXXX", msg[1024], src[512], path[512];
	const char *data = RB_DATADIR "/efivars/ovmf-virtio-net";
	uint8_t buf[70000];
	struct dirent *de;
	uint8_t got[64];
	DIR *d;
	int e;

	(void)state;
	d = opendir(data);
	if (!d) {
		print_message("no %s: skipped\n", data);
		skip();
	}
	assert_non_null(mkdtemp(dir));
	while ((de = readdir(d))) {
		FILE *in, *out;
		size_t n;

		if (de->d_name[0] == '.' || strstr(de->d_name, GUID) == NULL)
			continue;
		snprintf(src, sizeof(src), "%s/%s", data, de->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		in = fopen(src, "rb");
		out = fopen(path, "wb");
		assert_non_null(in);
		assert_non_null(out);
		n = fread(buf, 1, sizeof(buf), in);
		assert_int_equal(fwrite(buf, 1, n, out), n);
		fclose(in);
		fclose(out);
	}
	closedir(d);
	e = agent_efi_netboot_next(dir, MAC_NODE, false, msg, sizeof(msg));
	print_message("%s\n", msg);
	assert_int_equal(e, 0);
	assert_non_null(strstr(msg, "(UEFI PXEv4 (MAC:525400E20022)), written to efivarfs (PXE "
	                            "over IPv4"));
	assert_non_null(strstr(msg, "PciRoot(0x0)/Pci(0x3,0x0)/MAC(525400e20022,0x1)/IPv4("));
	assert_non_null(strstr(msg, "BootNext = Boot0003 "));
	assert_int_equal(read_var(dir, "BootNext", got, sizeof(got)), 6);
	assert_memory_equal(got, "\x07\x00\x00\x00\x03\x00", 6);

	/* without the PXEv4 entry: OVMF's HTTPv4 (Boot0005) before PXEv6 (0004) */
	snprintf(path, sizeof(path), "%s/Boot0003" GUID, dir);
	assert_int_equal(unlink(path), 0);
	e = agent_efi_netboot_next(dir, MAC_NODE, false, msg, sizeof(msg));
	assert_int_equal(e, 0);
	assert_non_null(strstr(msg, "BootNext = Boot0005 (UEFI HTTPv4 (MAC:525400E20022))"));
	assert_int_equal(read_var(dir, "BootNext", got, sizeof(got)), 6);
	assert_memory_equal(got, "\x07\x00\x00\x00\x05\x00", 6);
	rm_tree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_entries),    cmocka_unit_test(test_parse_garbage),
		cmocka_unit_test(test_choose),           cmocka_unit_test(test_fixture_bootnext),
		cmocka_unit_test(test_fixture_bad_vars), cmocka_unit_test(test_ovmf_dump),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
