/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kni_abi.h - the shared kernel/userspace ABI of /dev/kni.
 *
 * This is the single C definition of the DPDK 22.11 KNI wire format
 * (ioctls, device info, FIFOs, mbuf view, requests) plus this module's
 * strict-mode extension.  It compiles in the kernel and in a plain
 * userspace C program (#include "kni_abi.h").  Layouts are the x86_64
 * (LP64) ones; every size and offset is asserted at the end of the file.
 *
 * DPDK declares sync_va, mbuf_va, the FIFO slots and the mbuf pointers
 * as "void *"; they are 64-bit integers here so that the layout does not
 * depend on the compiling program and kernel code never dereferences a
 * user pointer by accident.
 */
#ifndef KNI_ABI_H
#define KNI_ABI_H

#ifdef __KERNEL__
#include <linux/types.h>	/* also provides uint8_t ... uint64_t, int32_t */
#include <linux/stddef.h>
#include <linux/ioctl.h>
#else
#include <stdint.h>
#include <stddef.h>
#include <sys/ioctl.h>
#endif

#define KNI_DEVICE		"kni"
#define RTE_KNI_NAMESIZE	16

/* Request ids carried in struct rte_kni_request.req_id. */
enum rte_kni_req_id {
	RTE_KNI_REQ_UNKNOWN = 0,
	RTE_KNI_REQ_CHANGE_MTU,
	RTE_KNI_REQ_CFG_NETWORK_IF,
	RTE_KNI_REQ_CHANGE_MAC_ADDR,
	RTE_KNI_REQ_CHANGE_PROMISC,
	RTE_KNI_REQ_CHANGE_ALLMULTI,
	RTE_KNI_REQ_MAX,
};

/*
 * One request/response, written by the kernel into the sync area; the
 * user VA of that area (sync_va) travels through req_q and resp_q.
 * Packed: 17 bytes, the union keeps its natural size of 8.
 */
struct rte_kni_request {
	uint32_t req_id;
	__extension__ union {
		uint32_t new_mtu;
		uint8_t if_up;
		uint8_t mac_addr[6];
		uint8_t promiscusity;
		uint8_t allmulti;
	};
	int32_t async : 1;	/* bit 0 of byte 12; no response expected */
	int32_t result;		/* written by userspace, unaligned */
} __attribute__((__packed__));

/*
 * Single-producer/single-consumer ring of 64-bit entries.  Indices are
 * kept masked to len - 1; usable capacity is len - 1.  Initialised by
 * userspace only.
 */
struct rte_kni_fifo {
	uint32_t write;
	uint32_t read;
	uint32_t len;		/* power of two (1024 in DPDK) */
	uint32_t elem_size;	/* 8; ignored by the kernel */
	uint64_t buffer[];
};

#define RTE_KNI_CACHE_LINE_SIZE		64
#define RTE_KNI_CACHE_LINE_MIN_SIZE	64

/* The kernel's view of the first 72 bytes of a DPDK 22.11 struct rte_mbuf. */
struct rte_kni_mbuf {
	uint64_t buf_addr __attribute__((__aligned__(RTE_KNI_CACHE_LINE_SIZE)));
	uint64_t buf_iova;
	uint16_t data_off;
	char pad1[2];		/* refcnt */
	uint16_t nb_segs;
	char pad4[2];		/* port */
	uint64_t ol_flags;
	char pad2[4];		/* packet_type */
	uint32_t pkt_len;
	uint16_t data_len;
	char pad3[14];		/* vlan_tci, hash, vlan_tci_outer, buf_len */
	uint64_t pool;
	uint64_t next __attribute__((__aligned__(RTE_KNI_CACHE_LINE_MIN_SIZE)));
};

/* Argument of RTE_KNI_IOCTL_CREATE and RTE_KNI_IOCTL_RELEASE (136 bytes). */
struct rte_kni_device_info {
	char name[RTE_KNI_NAMESIZE];

	uint64_t tx_phys;	/* tx_q: kernel -> user */
	uint64_t rx_phys;	/* rx_q: user -> kernel */
	uint64_t alloc_phys;	/* alloc_q: user -> kernel */
	uint64_t free_phys;	/* free_q: kernel -> user */

	uint64_t req_phys;	/* req_q: kernel -> user */
	uint64_t resp_phys;	/* resp_q: user -> kernel */
	uint64_t sync_phys;	/* sync area (IOVA) */
	uint64_t sync_va;	/* sync area (user VA), echoed through req_q */

	uint64_t mbuf_va;	/* unused */
	uint64_t mbuf_phys;	/* unused */

	uint16_t group_id;	/* unused */
	uint32_t core_id;	/* CPU for the kthread when force_bind */
	__extension__ uint8_t force_bind : 1;

	unsigned int mbuf_size;	/* largest frame accepted on egress */
	unsigned int mtu;	/* 0: 1500 */
	unsigned int min_mtu;	/* 0: 68 */
	unsigned int max_mtu;	/* 0: the initial MTU */
	uint8_t mac_addr[6];	/* random MAC if not a valid unicast one */
	uint8_t iova_mode;	/* 0: IOVA is PA, else IOVA is VA */
};

/* Upstream ioctls: type 0, dispatched on the number only. */
#define RTE_KNI_IOCTL_TEST	_IOWR(0, 1, int)
#define RTE_KNI_IOCTL_CREATE	_IOWR(0, 2, struct rte_kni_device_info)
#define RTE_KNI_IOCTL_RELEASE	_IOWR(0, 3, struct rte_kni_device_info)

/*
 * Extension (this module only; upstream rte_kni.ko answers -EINVAL, which
 * is how userspace can tell the two apart): strict memory registration.
 *
 * RTE_KNI_IOCTL_REGISTER_MEM pins [va, va + len) of the caller's address
 * space (both page aligned, len > 0) for as long as /dev/kni stays open
 * and maps it into the kernel.  A device created after at least one
 * successful registration is "strict": its FIFOs, sync area and every
 * mbuf and data buffer referenced from its FIFOs must lie inside the
 * registered regions, whether the IOVA is a PA or a VA; anything else is
 * dropped and counted.  With the module parameter strict=required,
 * CREATE fails with -EPERM until memory has been registered.
 *
 * index (out) is the region number; flags must be 0 (-EINVAL otherwise).
 * Errors: -EINVAL bad alignment/length/flags or overlap with a region
 * already registered, -ENOSPC too many regions, -E2BIG region too large,
 * -EBUSY devices already exist on this fd, -EFAULT pinning failed.
 */
struct rte_kni_mem_region {
	uint64_t va;
	uint64_t len;
	uint32_t flags;
	uint32_t index;
};

#define RTE_KNI_IOCTL_REGISTER_MEM	_IOWR(0, 0x10, struct rte_kni_mem_region)

#define RTE_KNI_MEM_REGIONS_MAX		32
#define RTE_KNI_MEM_REGION_MAX_LEN	(16ULL << 30)	/* 16 GiB */

/* Layout checks against docs/kni-abi.md §1.2, §2 (x86_64). */
#ifdef __cplusplus
#define KNI_ABI_CHECK(expr) static_assert(expr, #expr)
#define KNI_ALIGNOF(type) alignof(type)
#else
#define KNI_ABI_CHECK(expr) _Static_assert(expr, #expr)
#define KNI_ALIGNOF(type) _Alignof(type)
#endif

KNI_ABI_CHECK(sizeof(struct rte_kni_request) == 17);
KNI_ABI_CHECK(offsetof(struct rte_kni_request, req_id) == 0);
KNI_ABI_CHECK(offsetof(struct rte_kni_request, new_mtu) == 4);
KNI_ABI_CHECK(offsetof(struct rte_kni_request, if_up) == 4);
KNI_ABI_CHECK(offsetof(struct rte_kni_request, mac_addr) == 4);
KNI_ABI_CHECK(offsetof(struct rte_kni_request, promiscusity) == 4);
KNI_ABI_CHECK(offsetof(struct rte_kni_request, allmulti) == 4);
KNI_ABI_CHECK(offsetof(struct rte_kni_request, result) == 13);

KNI_ABI_CHECK(sizeof(struct rte_kni_fifo) == 16);
KNI_ABI_CHECK(offsetof(struct rte_kni_fifo, write) == 0);
KNI_ABI_CHECK(offsetof(struct rte_kni_fifo, read) == 4);
KNI_ABI_CHECK(offsetof(struct rte_kni_fifo, len) == 8);
KNI_ABI_CHECK(offsetof(struct rte_kni_fifo, elem_size) == 12);
KNI_ABI_CHECK(offsetof(struct rte_kni_fifo, buffer) == 16);

KNI_ABI_CHECK(sizeof(struct rte_kni_mbuf) == 128);
KNI_ABI_CHECK(KNI_ALIGNOF(struct rte_kni_mbuf) == 64);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, buf_addr) == 0);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, buf_iova) == 8);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, data_off) == 16);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, pad1) == 18);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, nb_segs) == 20);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, pad4) == 22);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, ol_flags) == 24);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, pad2) == 32);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, pkt_len) == 36);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, data_len) == 40);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, pad3) == 42);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, pool) == 56);
KNI_ABI_CHECK(offsetof(struct rte_kni_mbuf, next) == 64);

KNI_ABI_CHECK(sizeof(struct rte_kni_device_info) == 136);
KNI_ABI_CHECK(KNI_ALIGNOF(struct rte_kni_device_info) == 8);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, name) == 0);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, tx_phys) == 16);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, rx_phys) == 24);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, alloc_phys) == 32);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, free_phys) == 40);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, req_phys) == 48);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, resp_phys) == 56);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, sync_phys) == 64);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, sync_va) == 72);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, mbuf_va) == 80);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, mbuf_phys) == 88);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, group_id) == 96);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, core_id) == 100);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, mbuf_size) == 108);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, mtu) == 112);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, min_mtu) == 116);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, max_mtu) == 120);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, mac_addr) == 124);
KNI_ABI_CHECK(offsetof(struct rte_kni_device_info, iova_mode) == 130);

KNI_ABI_CHECK(sizeof(struct rte_kni_mem_region) == 24);
KNI_ABI_CHECK(offsetof(struct rte_kni_mem_region, va) == 0);
KNI_ABI_CHECK(offsetof(struct rte_kni_mem_region, len) == 8);
KNI_ABI_CHECK(offsetof(struct rte_kni_mem_region, flags) == 16);
KNI_ABI_CHECK(offsetof(struct rte_kni_mem_region, index) == 20);

KNI_ABI_CHECK(RTE_KNI_IOCTL_TEST == 0xC0040001u);
KNI_ABI_CHECK(RTE_KNI_IOCTL_CREATE == 0xC0880002u);
KNI_ABI_CHECK(RTE_KNI_IOCTL_RELEASE == 0xC0880003u);
KNI_ABI_CHECK(RTE_KNI_IOCTL_REGISTER_MEM == 0xC0180010u);

#undef KNI_ABI_CHECK
#undef KNI_ALIGNOF

#endif /* KNI_ABI_H */
