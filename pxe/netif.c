/* Interface facts via ioctl and the neighbour table via /proc/net/arp.
 * Owns nothing; never called per packet on the DHCP path. */
#include "pxe/netif.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int netif_get(const char *ifname, struct netif_info *ret)
{
	struct netif_info info = { 0 };
	struct ifreq ifr = { 0 };
	int fd, r = 0;

	if (!ifname || strlen(ifname) >= IF_NAMESIZE)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memcpy(ifr.ifr_name, ifname, strlen(ifname) + 1);
	memcpy(info.name, ifname, strlen(ifname) + 1);
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
		r = -ENODEV;
		goto out;
	}
	info.index = (unsigned)ifr.ifr_ifindex;
	if (ioctl(fd, SIOCGIFMTU, &ifr) < 0) {
		r = -errno;
		goto out;
	}
	info.mtu = (unsigned)ifr.ifr_mtu;
	if (ioctl(fd, SIOCGIFADDR, &ifr) < 0) {
		r = -EADDRNOTAVAIL;
		goto out;
	}
	info.addr = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr;
	if (ioctl(fd, SIOCGIFNETMASK, &ifr) < 0) {
		r = -errno;
		goto out;
	}
	info.netmask = ((struct sockaddr_in *)&ifr.ifr_netmask)->sin_addr;
	*ret = info;
out:
	close(fd);
	return r;
}

int netif_neigh_mac(struct in_addr ip, uint8_t ret_mac[6])
{
	char line[256], want[INET_ADDRSTRLEN];
	FILE *f = fopen("/proc/net/arp", "re");
	int r = -ENOENT;

	if (!f)
		return -errno;
	inet_ntop(AF_INET, &ip, want, sizeof(want));
	/* IP address  HW type  Flags  HW address  Mask  Device */
	while (fgets(line, sizeof(line), f)) {
		char *sp = strchr(line, ' ');
		char *hw;

		if (!sp || (size_t)(sp - line) != strlen(want) || memcmp(line, want, strlen(want)))
			continue;
		hw = strstr(line, ":");
		if (!hw || hw - line < 2)
			continue;
		hw -= 2;
		if (strlen(hw) < 17)
			continue;
		hw[17] = '\0';
		if (rb_mac_parse(hw, ret_mac) == 0 && memcmp(ret_mac, "\0\0\0\0\0\0", 6)) {
			r = 0;
			break;
		}
	}
	fclose(f);
	return r;
}
