/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * compat.h - every kernel-version difference used by rte_kni, and only
 * here.  Feature macros are tested where the kernel provides one;
 * LINUX_VERSION_CODE otherwise.  Supported: 5.10 and later.
 */
#ifndef KNI_COMPAT_H
#define KNI_COMPAT_H

#include <linux/etherdevice.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/netdevice.h>
#include <linux/version.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 10, 0)
#error "rte_kni needs Linux 5.10 or later"
#endif

/* 5.15: eth_hw_addr_set(); dev_addr became const in 5.17. */
static inline void kni_set_mac(struct net_device *dev, const u8 *addr)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 15, 0)
	eth_hw_addr_set(dev, addr);
#else
	ether_addr_copy(dev->dev_addr, addr);
#endif
}

/* 6.1: netif_napi_add() lost its weight argument. */
static inline void kni_napi_add(struct net_device *dev,
				struct napi_struct *napi,
				int (*poll)(struct napi_struct *, int))
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 1, 0)
	netif_napi_add(dev, napi, poll);
#else
	netif_napi_add(dev, napi, poll, NAPI_POLL_WEIGHT);
#endif
}

/*
 * 6.12: NETIF_F_NETNS_LOCAL became the dev->netns_local bit, renamed
 * dev->netns_immutable in 6.14.  Stable kernels backport the rename
 * (Debian's 6.12.117 has it), so Kbuild probes the header for it.
 */
static inline void kni_set_netns_local(struct net_device *dev)
{
#if defined(NETIF_F_NETNS_LOCAL)
	dev->features |= NETIF_F_NETNS_LOCAL;
#elif defined(KNI_HAVE_NETNS_IMMUTABLE)
	dev->netns_immutable = true;
#else
	dev->netns_local = true;
#endif
}

/*
 * Reference one page of a foreign mm; the caller holds mmap_read_lock.
 * 6.5 dropped the vmas argument of get_user_pages_remote().
 */
static inline long kni_get_user_page_remote(struct mm_struct *mm,
					    unsigned long addr,
					    unsigned int gup_flags,
					    struct page **page)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 5, 0)
	return get_user_pages_remote(mm, addr, 1, gup_flags, page, NULL);
#else
	return get_user_pages_remote(mm, addr, 1, gup_flags, page, NULL, NULL);
#endif
}

/* 5.11: kmap_local_page(); x86_64 has no highmem so kmap_atomic is fine. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(5, 11, 0)
#define kni_kmap(page)		kmap_local_page(page)
#define kni_kunmap(addr)	kunmap_local(addr)
#else
#define kni_kmap(page)		kmap_atomic(page)
#define kni_kunmap(addr)	kunmap_atomic(addr)
#endif

/*
 * Ingress skbs from a page pool of fragments (5.15+; Kbuild probes for
 * page_pool_dev_alloc_frag()).  6.6 moved the helpers to
 * net/page_pool/helpers.h; until 6.7 fragments needed PP_FLAG_PAGE_FRAG.
 */
#if defined(KNI_HAVE_PP_FRAG) && IS_ENABLED(CONFIG_PAGE_POOL)
#define KNI_USE_PAGE_POOL 1
#ifdef KNI_HAVE_PP_HELPERS_H
#include <net/page_pool/helpers.h>
#else
#include <net/page_pool.h>
#endif
#ifdef PP_FLAG_PAGE_FRAG
#define KNI_PP_FLAGS	PP_FLAG_PAGE_FRAG
#else
#define KNI_PP_FLAGS	0
#endif
#endif

#endif /* KNI_COMPAT_H */
