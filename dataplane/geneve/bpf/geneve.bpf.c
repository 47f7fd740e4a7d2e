// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0
/*
 * The GENEVE fast path: the AWS Gateway Load Balancer's encapsulation done by the kernel (tc, cls_bpf direct action).
 *
 * geneve_in (ingress of the interface the load balancer reaches): UDP to 6081 on the node's address from the load
 * balancer's subnets, with exactly AWS's header (version 0, no control bit, protocol IPv4, the three class 0x0108
 * options once each with their lengths) and an inner IPv4 packet whose length matches and that is not a fragment,
 * loses its outer IPv4, UDP and GENEVE headers (bpf_skb_adjust_room) and goes on into the stack with the mark
 * `fwmark`, so nftables meets it like any packet from the workload's link (TPROXY, the filter table) and marks its
 * connection. The flow's outer addresses and GENEVE header are remembered in `geneve_flows` (LRU, keyed by the
 * inner flow, direction-free, like dataplane/geneve/packet.py's flow_key).
 *
 * geneve_out (egress of the GENEVE TUN, where policy routing sends a GENEVE flow's replies): a packet of a known
 * flow gets the stored header back (outer addresses swapped, UDP 6081 both ways, the GENEVE header and options as
 * they came) and leaves by the physical interface (bpf_redirect_neigh). GSO packets are marked as UDP tunnel
 * packets, so the kernel segments them and fills in their checksums on the way out.
 *
 * Anything this program does not fully understand is left unchanged (TC_ACT_OK): on ingress it reaches the
 * user-space worker's UDP socket, which validates it again and counts and drops what is malformed; on egress it
 * reaches the TUN, whose reader (the worker) returns it if it knows the flow. Every outcome is counted.
 *
 * Parsing reads fixed-size copies (bpf_skb_load_bytes) with every offset checked against the lengths the packet
 * claims and the bytes it has; the verifier proves every access is in bounds and the program ends.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define GENEVE_PORT 6081
#define AWS_OPTION_CLASS 0x0108
#define GENEVE_HDR 40 /* 8 bytes of header, 32 of AWS's three options */
#define OUTER_LEN (sizeof(struct iphdr) + sizeof(struct udphdr) + GENEVE_HDR) /* 68: AWS's overhead */
#define INNER_OFF (ETH_HLEN + OUTER_LEN)
#define MAX_CIDRS 8
#define IP_MF_OFFSET 0x3fff
#define IP_DF 0x4000

/* Counter slots: dataplane/geneve/fastpath.py COUNTERS lists the same names in the same order. */
enum counter {
	C_DECAPSULATED,      /* into the stack */
	C_ENCAPSULATED,      /* a reply wrapped and sent to the load balancer */
	C_LEARNED,           /* a flow added (or moved to another load balancer node or cookie) */
	C_UP_FOREIGN_SOURCE, /* not from gwlb_cidrs: up to the worker, which drops it */
	C_UP_MALFORMED,      /* the header, options or inner packet are not exactly AWS's: up to the worker */
	C_UP_OVERSIZE,       /* inner packet larger than the TUN's MTU: up to the worker */
	C_UP_OUTER,          /* outer IP options, a fragment or a GRO packet: up to the worker */
	C_UP_DECAP_FAILED,   /* the kernel refused to remove the headers: up to the worker */
	C_UP_NO_FLOW,        /* a reply of a flow this table does not hold: on to the TUN */
	C_UP_EXPIRED,        /* a reply of a flow idle longer than flow_idle: on to the TUN */
	C_UP_NOT_CARRIED,    /* a packet in the TUN that is no IPv4 flow (a fragment, IPv6): on to the TUN */
	C_UP_ENCAP_FAILED,   /* the kernel refused to add the headers: on to the TUN */
	C_DROP_ENCAP,        /* headers half added: dropped */
	C_MAX,
};

struct config {
	__u32 local_addr;  /* network order: where the load balancer sends (0: any) */
	__u32 mtu;         /* the largest inner packet */
	__u32 fwmark;      /* set on decapsulated packets */
	__u32 out_ifindex; /* where wrapped replies leave */
	__u64 idle_ns;     /* a flow idle longer is forgotten */
	__u32 cidr_count;
	__u32 cidr_addr[MAX_CIDRS]; /* network order */
	__u32 cidr_mask[MAX_CIDRS];
};

struct flow_key { /* host order; the endpoint with the lower (address, port) first */
	__u32 lo_addr;
	__u32 hi_addr;
	__u16 lo_port;
	__u16 hi_port;
	__u8 proto;
	__u8 pad[3];
};

struct flow {
	__u32 gwlb_addr;  /* network order: the load balancer node */
	__u32 local_addr; /* network order: the address it sent to */
	__u64 seen_ns;
	__u8 header[GENEVE_HDR];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} geneve_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* the loader sets geneve.flow_limit */
	__type(key, struct flow_key);
	__type(value, struct flow);
} geneve_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} geneve_counts SEC(".maps");

struct outer {
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
} __attribute__((packed));

struct geneve { /* 8-byte aligned, so flows compare by words */
	__u8 bytes[GENEVE_HDR];
} __attribute__((aligned(8)));

struct wrap { /* no padding: 20 + 8 + 40 */
	struct iphdr ip;
	struct udphdr udp;
	__u8 geneve[GENEVE_HDR];
};
_Static_assert(sizeof(struct wrap) == OUTER_LEN, "the outer headers are 68 bytes");

static __always_inline int count(enum counter slot)
{
	__u32 key = slot;
	__u64 *value = bpf_map_lookup_elem(&geneve_counts, &key);

	if (value)
		*value += 1; /* per CPU: no other writer */
	return TC_ACT_OK;
}

static __always_inline struct config *config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&geneve_config, &zero);
}

static __always_inline int source_allowed(const struct config *cfg, __u32 saddr)
{
#pragma unroll
	for (int i = 0; i < MAX_CIDRS; i++) {
		if (i >= cfg->cidr_count)
			return 0;
		if ((saddr & cfg->cidr_mask[i]) == cfg->cidr_addr[i])
			return 1;
	}
	return 0;
}

/* The direction-free key of the IPv4 packet at `off` (`len` bytes); -1 when it is not one this program carries. */
static __always_inline int inner_key(struct __sk_buff *skb, __u32 off, __u32 len, struct flow_key *key)
{
	struct iphdr ip;
	__u16 ports[2] = {0, 0};
	__u32 ihl, src, dst;

	if (len < sizeof(ip) || bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return -1;
	ihl = ip.ihl * 4;
	if (ip.version != 4 || ihl < sizeof(ip) || bpf_ntohs(ip.tot_len) != len || ihl > len)
		return -1;
	if (ip.frag_off & bpf_htons(IP_MF_OFFSET))
		return -1; /* a later fragment carries no ports */
	if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) {
		if (ihl + 4 > len || ihl > 60)
			return -1;
		if (bpf_skb_load_bytes(skb, off + ihl, ports, sizeof(ports)) < 0)
			return -1;
	}
	src = bpf_ntohl(ip.saddr);
	dst = bpf_ntohl(ip.daddr);
	__u16 sport = bpf_ntohs(ports[0]), dport = bpf_ntohs(ports[1]);

	__builtin_memset(key, 0, sizeof(*key));
	key->proto = ip.protocol;
	if (src < dst || (src == dst && sport <= dport)) {
		key->lo_addr = src, key->lo_port = sport, key->hi_addr = dst, key->hi_port = dport;
	} else {
		key->lo_addr = dst, key->lo_port = dport, key->hi_addr = src, key->hi_port = sport;
	}
	return 0;
}

/* AWS's three options, each once, in any order, filling the 32 bytes exactly. */
static __always_inline int aws_options(const __u8 *g)
{
	__u32 off = 8, seen = 0;

#pragma unroll
	for (int i = 0; i < 3; i++) {
		if (off > GENEVE_HDR - 4)
			return -1;
		__u16 klass = (g[off] << 8) | g[off + 1];
		__u8 kind = g[off + 2] & 0x7f; /* the high bit marks a critical option; ours are known either way */
		__u8 words = g[off + 3] & 0x1f;

		if (klass != AWS_OPTION_CLASS || kind < 1 || kind > 3)
			return -1;
		if (words != (kind == 3 ? 1 : 2) || seen & (1 << kind))
			return -1;
		seen |= 1 << kind;
		off += 4 + words * 4;
	}
	return off == GENEVE_HDR && seen == 0xe ? 0 : -1;
}

static __always_inline int same_flow(const struct flow *a, const struct outer *o, const struct geneve *g)
{
	const __u64 *x = (const __u64 *)a->header, *y = (const __u64 *)g->bytes;
	__u64 diff = (a->gwlb_addr ^ o->ip.saddr) | (a->local_addr ^ o->ip.daddr);

#pragma unroll
	for (int i = 0; i < GENEVE_HDR / 8; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

SEC("tc")
int geneve_in(struct __sk_buff *skb)
{
	struct outer o;
	struct geneve g;
	struct flow_key key;
	struct config *cfg;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, 0, &o, sizeof(o)) < 0)
		return TC_ACT_OK;
	if (o.ip.version != 4 || o.ip.protocol != IPPROTO_UDP || o.ip.ihl != 5 || o.udp.dest != bpf_htons(GENEVE_PORT))
		return TC_ACT_OK; /* not GENEVE for this program (IP options: the socket gets it, as before) */
	cfg = config();
	if (!cfg || (cfg->local_addr && o.ip.daddr != cfg->local_addr))
		return TC_ACT_OK;
	/* GENEVE for this node from here on: every outcome is counted. */
	if ((o.ip.frag_off & bpf_htons(IP_MF_OFFSET)) || skb->gso_size)
		return count(C_UP_OUTER);
	if (!source_allowed(cfg, o.ip.saddr))
		return count(C_UP_FOREIGN_SOURCE);
	__u32 ip_total = bpf_ntohs(o.ip.tot_len), udp_len = bpf_ntohs(o.udp.len);

	if (ip_total < sizeof(struct iphdr) + sizeof(struct udphdr) || udp_len != ip_total - sizeof(struct iphdr) ||
	    skb->len < ETH_HLEN + ip_total || udp_len < sizeof(struct udphdr) + GENEVE_HDR)
		return count(C_UP_MALFORMED);
	if (bpf_skb_load_bytes(skb, sizeof(o), g.bytes, GENEVE_HDR) < 0)
		return count(C_UP_MALFORMED);
	if (g.bytes[0] != 8 /* version 0, 8 words of options */ || g.bytes[1] & 0x80 /* control */ ||
	    g.bytes[2] != 0x08 || g.bytes[3] != 0x00 /* IPv4 */ || aws_options(g.bytes) < 0)
		return count(C_UP_MALFORMED);
	__u32 inner_len = udp_len - sizeof(struct udphdr) - GENEVE_HDR;

	if (inner_len > cfg->mtu)
		return count(C_UP_OVERSIZE);
	if (inner_key(skb, INNER_OFF, inner_len, &key) < 0)
		return count(C_UP_MALFORMED);

	struct flow *known = bpf_map_lookup_elem(&geneve_flows, &key);
	__u64 now = bpf_ktime_get_ns();

	if (known && same_flow(known, &o, &g)) {
		known->seen_ns = now;
	} else {
		struct flow fresh = {.gwlb_addr = o.ip.saddr, .local_addr = o.ip.daddr, .seen_ns = now};

		__builtin_memcpy(fresh.header, g.bytes, GENEVE_HDR);
		if (bpf_map_update_elem(&geneve_flows, &key, &fresh, BPF_ANY) < 0)
			return count(C_UP_DECAP_FAILED);
		count(C_LEARNED);
	}
	if (bpf_skb_adjust_room(skb, -(__s32)OUTER_LEN, BPF_ADJ_ROOM_MAC, 0) < 0)
		return count(C_UP_DECAP_FAILED);
	skb->mark = cfg->fwmark;
	return count(C_DECAPSULATED);
}

static __always_inline __u16 ip_checksum(struct iphdr *ip)
{
	__u32 sum = bpf_csum_diff(0, 0, (__be32 *)ip, sizeof(*ip), 0);

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

SEC("tc")
int geneve_out(struct __sk_buff *skb)
{
	struct flow_key key;
	struct config *cfg = config();
	struct wrap w = {};

	if (!cfg)
		return TC_ACT_OK;
	/* A GSO packet's IPv4 total length is its skb->len as well (the stack sets it so before splitting). */
	if (skb->protocol != bpf_htons(ETH_P_IP) || inner_key(skb, 0, skb->len, &key) < 0)
		return count(C_UP_NOT_CARRIED);
	struct flow *known = bpf_map_lookup_elem(&geneve_flows, &key);
	__u64 now = bpf_ktime_get_ns();

	if (!known)
		return count(C_UP_NO_FLOW);
	if (now > known->seen_ns && now - known->seen_ns > cfg->idle_ns) /* another CPU may have refreshed it after `now` */
		return count(C_UP_EXPIRED);
	known->seen_ns = now;
	__builtin_memcpy(w.geneve, known->header, GENEVE_HDR);
	w.ip.version = 4;
	w.ip.ihl = 5;
	w.ip.tot_len = bpf_htons((__u16)(skb->len + OUTER_LEN)); /* a GSO packet's segments get theirs when split */
	w.ip.frag_off = bpf_htons(IP_DF);
	w.ip.ttl = 64;
	w.ip.protocol = IPPROTO_UDP;
	w.ip.saddr = known->local_addr;
	w.ip.daddr = known->gwlb_addr;
	w.ip.check = ip_checksum(&w.ip);
	w.udp.source = bpf_htons(GENEVE_PORT);
	w.udp.dest = bpf_htons(GENEVE_PORT);
	w.udp.len = bpf_htons((__u16)(skb->len + OUTER_LEN - sizeof(struct iphdr)));
	w.udp.check = 0; /* RFC 8926 3.3: zero is allowed over IPv4; the inner packet carries its own checksums */

	/* Segments keep the MSS the TUN's MTU gave (FIXED_GSO): inner packets up to geneve.mtu, 68 bytes more outside. */
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP |
		      BPF_F_ADJ_ROOM_ENCAP_L2(GENEVE_HDR);

	if (bpf_skb_adjust_room(skb, OUTER_LEN, BPF_ADJ_ROOM_MAC, flags) < 0)
		return count(C_UP_ENCAP_FAILED);
	if (bpf_skb_store_bytes(skb, 0, &w, sizeof(w), 0) < 0) {
		count(C_DROP_ENCAP);
		return TC_ACT_SHOT;
	}
	/* bpf_redirect_neigh takes an Ethernet frame and fills in the addresses from the neighbour table. */
	struct ethhdr eth = {.h_proto = bpf_htons(ETH_P_IP)};

	if (bpf_skb_change_head(skb, ETH_HLEN, 0) < 0 || bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0) {
		count(C_DROP_ENCAP);
		return TC_ACT_SHOT;
	}
	skb->mark = 0; /* the mark routed it into the TUN; the outer packet is routed afresh */
	count(C_ENCAPSULATED);
	return bpf_redirect_neigh(cfg->out_ifindex, NULL, 0, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
