/* Facts about a network interface that the servers need: index, MTU and
 * IPv4 address/netmask. Reads them once at start-up (ioctl), no caching. */
#pragma once
#include <net/if.h>
#include <netinet/in.h>

struct netif_info {
	char name[IF_NAMESIZE];
	unsigned index;
	unsigned mtu;
	struct in_addr addr;
	struct in_addr netmask;
};

/* -ENODEV if there is no such interface, -EADDRNOTAVAIL if it has no IPv4. */
int netif_get(const char *ifname, struct netif_info *ret);
/* MAC of the neighbour with that IPv4 address from the kernel's ARP table
 * (/proc/net/arp); -ENOENT if unknown. Used to tie TFTP/HTTP peers to nodes. */
int netif_neigh_mac(struct in_addr ip, uint8_t ret_mac[6]);
