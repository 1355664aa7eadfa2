/* Disk image format detection by magic bytes (and, for VMDK text
 * descriptors, the line structure QEMU's probe accepts).
 *
 * The imager takes raw disks (plain or gzip/xz/zstd-compressed) and tar
 * archives; virtual-disk containers are refused, because their allocation
 * tables would have to be interpreted to know the disk's bytes, which is
 * qemu-img's job. Each refusal names the qemu-img command that converts.
 * Pure: the caller supplies the head (and the tail, for fixed VHD, whose
 * only magic is a footer in the last 512 bytes). Every read is bounded by
 * the buffer length; a short buffer simply matches fewer formats. */
#include "common/imgformat.h"

#include <stdint.h>
#include <string.h>

#include "common/util.h"

struct magic {
	const char *name;
	size_t off;
	const char *bytes;
	size_t len;
	bool refused;
};

#define M(n, o, b, r)                                                                              \
	{                                                                                          \
		n, o, b, sizeof(b) - 1, r                                                          \
	}

/* Order matters: containers before the MBR check (a VHD or VMDK never has
 * 55aa at 510, but a GPT disk has both a protective MBR and "EFI PART"). */
static const struct magic magics[] = {
	M("qcow2", 0, "QFI\xfb", true),
	M("qed", 0, "QED\0", true),
	M("vmdk", 0, "KDMV", true),
	M("vmdk", 0, "COWD", true), /* VMDK3 (ESX 2 / Workstation 3) sparse */
	M("vmdk", 0, "# Disk DescriptorFile", true),
	M("vhdx", 0, "vhdxfile", true),
	M("vhd", 0, "conectix", true),
	M("vdi", 0x40, "\x7f\x10\xda\xbe", true), /* 0xbeda107f, little endian */
	M("parallels", 0, "WithoutFreeSpace", true),
	M("parallels", 0, "WithouFreSpacExt", true),
	M("gzip", 0, "\x1f\x8b", false),
	M("xz", 0, "\xfd\x37\x7a\x58\x5a\x00", false),
	M("zstd", 0, "\x28\xb5\x2f\xfd", false),
	M("tar", 257, "ustar", false),
	M("raw-gpt", 512, "EFI PART", false),
	M("raw-mbr", 510, "\x55\xaa", false),
};

static const struct {
	const char *name;
	const char *advice;
} advice[] = {
	{ "qcow2", "qcow2 image: convert it to raw first: "
	           "qemu-img convert -f qcow2 -O raw in.qcow2 out.img" },
	{ "qed",
	  "QED image: convert it to raw first: qemu-img convert -f qed -O raw in.qed out.img" },
	{ "vmdk", "VMDK image: convert it to raw first: "
	          "qemu-img convert -f vmdk -O raw in.vmdk out.img" },
	{ "vhdx", "VHDX image: convert it to raw first: "
	          "qemu-img convert -f vhdx -O raw in.vhdx out.img" },
	{ "vhd",
	  "VHD image: convert it to raw first: qemu-img convert -f vpc -O raw in.vhd out.img" },
	{ "vdi",
	  "VDI image: convert it to raw first: qemu-img convert -f vdi -O raw in.vdi out.img" },
	{ "parallels", "Parallels image: convert it to raw first: "
	               "qemu-img convert -f parallels -O raw in.hdd out.img" },
	{ "bzip2", "bzip2-compressed image: recompress it: "
	           "bzip2 -dc in.img.bz2 | zstd -T0 -o out.img.zst" },
};

static bool match(const uint8_t *buf, size_t len, const struct magic *m)
{
	return m->off <= len && m->len <= len - m->off &&
	       memcmp(buf + m->off, m->bytes, m->len) == 0;
}

/* A VMDK text descriptor as QEMU's vmdk_probe() finds one, whatever its
 * first comment says: '#' comment lines and lines of spaces, then
 * "version=1", "2" or "3" ending the line. Its extent lines name other
 * files, which any tool that probes the format would open: a disk
 * written from one must not look like it. */
static bool is_vmdk_descriptor(const uint8_t *b, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (b[i] == '#') {
			while (i < len && b[i] != '\n')
				i++;
			i++;
			continue;
		}
		if (b[i] == ' ') {
			while (i < len && b[i] == ' ')
				i++;
			if (i < len && b[i] == '\r')
				i++;
			if (i == len || b[i] != '\n')
				return false;
			i++;
			continue;
		}
		if (len - i >= 10 && memcmp(b + i, "version=", 8) == 0 && b[i + 8] >= '1' &&
		    b[i + 8] <= '3')
			return b[i + 9] == '\n' ||
			       (b[i + 9] == '\r' && len - i >= 11 && b[i + 10] == '\n');
		return false;
	}
	return false;
}

int img_detect_format(const void *head, size_t len, const char **ret_name, bool *ret_refused)
{
	const uint8_t *b = head;

	/* First: comment lines may carry any bytes, "55aa" at 510 or "ustar"
	 * at 257 included, and QEMU would still take the file for a VMDK. */
	if (is_vmdk_descriptor(b, len)) {
		*ret_name = "vmdk";
		*ret_refused = true;
		return 0;
	}
	for (size_t i = 0; i < RB_ARRAY_SIZE(magics); i++) {
		if (match(b, len, &magics[i])) {
			*ret_name = magics[i].name;
			*ret_refused = magics[i].refused;
			return 0;
		}
		/* bzip2 ("BZh" + block size digit) is checked among the
		 * compressors, before tar and the partition tables. */
		if (!strcmp(magics[i].name, "zstd") && len >= 4 && b[0] == 'B' && b[1] == 'Z' &&
		    b[2] == 'h' && b[3] >= '1' && b[3] <= '9') {
			*ret_name = "bzip2";
			*ret_refused = true;
			return 0;
		}
	}
	*ret_name = "raw";
	*ret_refused = false;
	return 0;
}

bool img_detect_tail(const void *tail, size_t len, const char **ret_name)
{
	const uint8_t *b = tail;

	/* The VHD footer is 512 bytes; VHDs made before Virtual PC 2004 have a
	 * 511-byte one. */
	if ((len >= 512 && memcmp(b + len - 512, "conectix", 8) == 0) ||
	    (len >= 511 && memcmp(b + len - 511, "conectix", 8) == 0)) {
		*ret_name = "vhd";
		return true;
	}
	return false;
}

const char *img_format_advice(const char *name)
{
	for (size_t i = 0; i < RB_ARRAY_SIZE(advice); i++)
		if (!strcmp(name, advice[i].name))
			return advice[i].advice;
	return NULL;
}
