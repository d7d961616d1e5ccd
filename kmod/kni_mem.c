// SPDX-License-Identifier: GPL-2.0-only
/*
 * kni_mem.c - translation of the addresses found in device info and
 * FIFOs, and every access to the memory they designate.
 *
 * Three translation schemes, chosen per device at CREATE:
 *
 * strict  Userspace registered its memory with RTE_KNI_IOCTL_REGISTER_MEM;
 *         it is pinned and vmapped once.  An address is accepted only if
 *         the whole object lies inside one region (for a PA, inside one
 *         physically contiguous run of it).  Works in any context.
 * PA      IOVA is a physical address: every page touched must be
 *         ordinary, in-use RAM (pfn_valid, not reserved, not ZONE_DEVICE,
 *         not highmem, referenced); accessed through the linear map.
 *         Works in any context.
 * VA      IOVA is a user address of the creating process: FIFOs and sync
 *         area are pinned at CREATE; mbufs are reached page by page with
 *         get_user_pages_remote() under mmap_read_lock, holding an mm_users
 *         reference (kni_mem_begin/end).  Process context only.
 */
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/vmalloc.h>

#include "compat.h"
#include "kni_dev.h"

enum kni_mem_op {
	KNI_MEM_READ,
	KNI_MEM_WRITE,
	KNI_MEM_ZERO,
};

static void kni_mem_copy(void *kva, void *buf, size_t len, enum kni_mem_op op)
{
	switch (op) {
	case KNI_MEM_READ:
		memcpy(buf, kva, len);
		break;
	case KNI_MEM_WRITE:
		memcpy(kva, buf, len);
		break;
	case KNI_MEM_ZERO:
		memset(kva, 0, len);
		break;
	}
}

/* ---- strict-mode regions ---- */

static int kni_extent_cmp(const void *a, const void *b)
{
	const struct kni_pa_extent *x = a, *y = b;

	if (x->pfn != y->pfn)
		return x->pfn < y->pfn ? -1 : 1;
	return 0;
}

static int kni_region_build_extents(struct kni_region *region)
{
	unsigned long i, n = 0;
	struct kni_pa_extent *ext;

	ext = kvmalloc_array(region->npages, sizeof(*ext), GFP_KERNEL);
	if (!ext)
		return -ENOMEM;
	for (i = 0; i < region->npages; i++) {
		unsigned long pfn = page_to_pfn(region->pages[i]);

		if (n && ext[n - 1].pfn + ext[n - 1].count == pfn &&
		    ext[n - 1].index + ext[n - 1].count == i) {
			ext[n - 1].count++;
			continue;
		}
		ext[n].pfn = pfn;
		ext[n].index = i;
		ext[n].count = 1;
		n++;
	}
	sort(ext, n, sizeof(*ext), kni_extent_cmp, NULL);
	region->extents = ext;
	region->nr_extents = n;
	return 0;
}

static void kni_region_free(struct kni_region *region)
{
	if (region->kva)
		vunmap(region->kva);
	if (region->pages) {
		unpin_user_pages_dirty_lock(region->pages, region->npages, true);
		kvfree(region->pages);
	}
	kvfree(region->extents);
	kfree(region);
}

int kni_region_register(struct kni_ctx *ctx, struct rte_kni_mem_region *req)
{
	struct kni_region *region;
	unsigned long pinned = 0;
	unsigned int i;
	int ret;

	if (req->flags || !req->len || !PAGE_ALIGNED(req->va) ||
	    !PAGE_ALIGNED(req->len) || req->va + req->len < req->va)
		return -EINVAL;
	if (req->len > RTE_KNI_MEM_REGION_MAX_LEN)
		return -E2BIG;
	if (ctx->nr_regions >= RTE_KNI_MEM_REGIONS_MAX)
		return -ENOSPC;
	for (i = 0; i < ctx->nr_regions; i++) {
		struct kni_region *r = ctx->regions[i];

		if (req->va < r->uva + r->len && r->uva < req->va + req->len)
			return -EINVAL;
	}

	region = kzalloc(sizeof(*region), GFP_KERNEL);
	if (!region)
		return -ENOMEM;
	region->uva = req->va;
	region->len = req->len;
	region->npages = req->len >> PAGE_SHIFT;
	region->pages = kvmalloc_array(region->npages, sizeof(struct page *),
				       GFP_KERNEL);
	if (!region->pages) {
		kfree(region);
		return -ENOMEM;
	}

	while (pinned < region->npages) {
		int chunk = min_t(unsigned long, region->npages - pinned,
				  INT_MAX >> PAGE_SHIFT);

		ret = pin_user_pages_fast(req->va + (pinned << PAGE_SHIFT),
					  chunk, FOLL_WRITE | FOLL_LONGTERM,
					  region->pages + pinned);
		if (ret <= 0)
			break;
		pinned += ret;
	}
	if (pinned < region->npages) {
		if (pinned)
			unpin_user_pages(region->pages, pinned);
		kvfree(region->pages);
		kfree(region);
		return -EFAULT;
	}

	ret = -ENOMEM;
	region->kva = vmap(region->pages, region->npages, VM_MAP, PAGE_KERNEL);
	if (!region->kva)
		goto err;
	ret = kni_region_build_extents(region);
	if (ret)
		goto err;

	req->index = ctx->nr_regions;
	ctx->regions[ctx->nr_regions++] = region;
	return 0;
err:
	kni_region_free(region);
	return ret;
}

void kni_regions_release(struct kni_ctx *ctx)
{
	while (ctx->nr_regions) {
		ctx->nr_regions--;
		kni_region_free(ctx->regions[ctx->nr_regions]);
		ctx->regions[ctx->nr_regions] = NULL;
	}
}

/* Kernel address of [uva, uva + len) if it lies inside one region. */
static void *kni_strict_va(struct kni_ctx *ctx, u64 uva, size_t len)
{
	unsigned int i;

	for (i = 0; i < ctx->nr_regions; i++) {
		struct kni_region *r = ctx->regions[i];

		if (uva >= r->uva && len <= r->len && uva - r->uva <= r->len - len)
			return r->kva + (uva - r->uva);
	}
	return NULL;
}

/* Kernel address of [pa, pa + len) if it lies inside one contiguous run. */
static void *kni_strict_pa(struct kni_ctx *ctx, u64 pa, size_t len)
{
	unsigned long first = PHYS_PFN(pa), last = PHYS_PFN(pa + len - 1);
	unsigned int i;

	for (i = 0; i < ctx->nr_regions; i++) {
		struct kni_region *r = ctx->regions[i];
		unsigned long lo = 0, hi = r->nr_extents;

		while (lo < hi) {
			unsigned long mid = lo + (hi - lo) / 2;
			struct kni_pa_extent *e = &r->extents[mid];

			if (first < e->pfn) {
				hi = mid;
			} else if (first >= e->pfn + e->count) {
				lo = mid + 1;
			} else {
				if (last >= e->pfn + e->count)
					break;
				return r->kva +
				       ((e->index + first - e->pfn) << PAGE_SHIFT) +
				       offset_in_page(pa);
			}
		}
	}
	return NULL;
}

static void *kni_strict_kva(struct kni_dev *kni, u64 iova, size_t len)
{
	if (!len || iova + len < iova)
		return NULL;
	if (kni->iova_mode)
		return kni_strict_va(kni->ctx, iova, len);
	return kni_strict_pa(kni->ctx, iova, len);
}

/* ---- IOVA=PA ---- */

/* Ordinary RAM in use: no holes, reserved, device or free pages. */
static bool kni_pfn_is_ordinary_ram(unsigned long pfn)
{
	struct page *page;

	if (!pfn_valid(pfn))
		return false;
	page = pfn_to_page(pfn);
	if (PageReserved(page) || PageHighMem(page) ||
	    is_zone_device_page(page))
		return false;
	return page_count(page) > 0;
}

static void *kni_pa_kva(u64 pa, size_t len)
{
	unsigned long pfn, last;

	if (!len || pa + len < pa)
		return NULL;
	last = PHYS_PFN(pa + len - 1);
	for (pfn = PHYS_PFN(pa); pfn <= last; pfn++)
		if (!kni_pfn_is_ordinary_ram(pfn))
			return NULL;
	return phys_to_virt(pa);
}

/* ---- IOVA=VA, not strict ---- */

int kni_mem_begin(struct kni_dev *kni)
{
	if (kni->atomic_xlate)
		return 0;
	if (!mmget_not_zero(kni->mm))
		return -ESRCH;	/* the owner's address space is gone */
	mmap_read_lock(kni->mm);
	return 0;
}

void kni_mem_end(struct kni_dev *kni)
{
	if (kni->atomic_xlate)
		return;
	mmap_read_unlock(kni->mm);
	mmput(kni->mm);
}

/* Caller holds kni_mem_begin(). */
static int kni_uva_access(struct kni_dev *kni, u64 uva, void *buf, size_t len,
			  enum kni_mem_op op)
{
	unsigned int gup_flags = op == KNI_MEM_READ ? 0 : FOLL_WRITE;

	if (!len || uva + len < uva)
		return -EFAULT;
	while (len) {
		size_t off = offset_in_page(uva);
		size_t chunk = min_t(size_t, len, PAGE_SIZE - off);
		struct page *page;
		void *kva;

		if (kni_get_user_page_remote(kni->mm, uva & PAGE_MASK,
					     gup_flags, &page) != 1)
			return -EFAULT;
		kva = kni_kmap(page);
		kni_mem_copy(kva + off, buf, chunk, op);
		kni_kunmap(kva);
		if (op != KNI_MEM_READ)
			set_page_dirty_lock(page);
		put_page(page);

		uva += chunk;
		len -= chunk;
		if (op != KNI_MEM_ZERO)
			buf += chunk;
	}
	return 0;
}

/* ---- common entry points ---- */

static int kni_mem_access(struct kni_dev *kni, u64 iova, void *buf,
			  size_t len, enum kni_mem_op op)
{
	void *kva;

	if (!kni->atomic_xlate)
		return kni_uva_access(kni, iova, buf, len, op);
	kva = kni->strict ? kni_strict_kva(kni, iova, len) : kni_pa_kva(iova, len);
	if (!kva)
		return -EFAULT;
	kni_mem_copy(kva, buf, len, op);
	return 0;
}

int kni_mem_read(struct kni_dev *kni, u64 iova, void *dst, size_t len)
{
	return kni_mem_access(kni, iova, dst, len, KNI_MEM_READ);
}

int kni_mem_write(struct kni_dev *kni, u64 iova, const void *src, size_t len)
{
	return kni_mem_access(kni, iova, (void *)src, len, KNI_MEM_WRITE);
}

int kni_mem_zero(struct kni_dev *kni, u64 iova, size_t len)
{
	return kni_mem_access(kni, iova, NULL, len, KNI_MEM_ZERO);
}

/* ---- FIFO and sync areas, mapped for the device's lifetime ---- */

static int kni_area_map_pa(struct kni_area *area, u64 pa, size_t len)
{
	unsigned long pfn = PHYS_PFN(pa);
	unsigned int i, n = PHYS_PFN(pa + len - 1) - pfn + 1;

	area->pages = kcalloc(n, sizeof(struct page *), GFP_KERNEL);
	if (!area->pages)
		return -ENOMEM;
	for (i = 0; i < n; i++, pfn++) {
		struct page *head;

		if (!kni_pfn_is_ordinary_ram(pfn) || !page_is_ram(pfn))
			return -EFAULT;
		/* Keep the pages from being freed and reused under us. */
		head = compound_head(pfn_to_page(pfn));
		if (!get_page_unless_zero(head))
			return -EFAULT;
		area->pages[area->npages++] = head;
	}
	area->kva = phys_to_virt(pa);
	return 0;
}

static int kni_area_map_va(struct kni_dev *kni, struct kni_area *area, u64 uva,
			   size_t len)
{
	unsigned long start = uva & PAGE_MASK;
	unsigned int n = PHYS_PFN(PAGE_ALIGN(uva + len) - start);
	int ret;

	/* The creating task owns the memory (checked by the caller). */
	area->pages = kcalloc(n, sizeof(struct page *), GFP_KERNEL);
	if (!area->pages)
		return -ENOMEM;
	ret = pin_user_pages_fast(start, n, FOLL_WRITE | FOLL_LONGTERM,
				  area->pages);
	if (ret > 0) {
		area->npages = ret;
		area->pinned = true;
	}
	if (ret != n)
		return -EFAULT;
	area->vmap_base = vmap(area->pages, n, VM_MAP, PAGE_KERNEL);
	if (!area->vmap_base)
		return -ENOMEM;
	area->kva = area->vmap_base + offset_in_page(uva);
	return 0;
}

/* Map [iova, iova + len); on failure the caller still calls unmap. */
int kni_area_map(struct kni_dev *kni, struct kni_area *area, u64 iova,
		 size_t len)
{
	if (!iova || !len || iova + len < iova)
		return -EFAULT;
	if (kni->strict) {
		area->kva = kni_strict_kva(kni, iova, len);
		return area->kva ? 0 : -EFAULT;
	}
	if (kni->iova_mode)
		return kni_area_map_va(kni, area, iova, len);
	return kni_area_map_pa(area, iova, len);
}

void kni_area_unmap(struct kni_area *area)
{
	unsigned int i;

	if (area->vmap_base)
		vunmap(area->vmap_base);
	if (area->pinned)
		unpin_user_pages_dirty_lock(area->pages, area->npages, true);
	else
		for (i = 0; i < area->npages; i++)
			put_page(area->pages[i]);
	kfree(area->pages);
	memset(area, 0, sizeof(*area));
}
