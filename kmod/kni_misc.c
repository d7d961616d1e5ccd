// SPDX-License-Identifier: GPL-2.0-only
/*
 * kni_misc.c - module entry points, the /dev/kni misc device, per-netns
 * and per-opener state and the CREATE / RELEASE / REGISTER_MEM ioctls.
 */
#include <linux/cpumask.h>
#include <linux/fs.h>
#include <linux/log2.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/nsproxy.h>
#include <linux/rtnetlink.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>

#include "compat.h"
#include "kni_dev.h"

static unsigned int kni_net_id;

static struct kni_net *kni_net_of(struct net *net)
{
	return net_generic(net, kni_net_id);
}

static int __net_init kni_net_init(struct net *net)
{
	struct kni_net *knet = kni_net_of(net);

	mutex_init(&knet->ioctl_lock);
	init_rwsem(&knet->devs_lock);
	INIT_LIST_HEAD(&knet->devs);
	return 0;
}

static void __net_exit kni_net_exit(struct net *net)
{
	mutex_destroy(&kni_net_of(net)->ioctl_lock);
}

static struct pernet_operations kni_net_ops = {
	.init	= kni_net_init,
	.exit	= kni_net_exit,
	.id	= &kni_net_id,
	.size	= sizeof(struct kni_net),
};

static void kni_dev_free(struct kni_dev *kni)
{
	unsigned int i;

	kni_rx_pages_destroy(kni);
	for (i = 0; i < KNI_AREA_COUNT; i++)
		kni_area_unmap(&kni->areas[i]);
	if (kni->mm)
		mmdrop(kni->mm);
	free_netdev(kni->netdev);
}

/*
 * Remove registered devices that are already off knet->devs.  Pending
 * requests are aborted first, so a device that is up goes away at once;
 * all netdevs are unregistered in one RTNL section.
 */
static void kni_devs_remove(struct list_head *doomed)
{
	struct kni_dev *kni, *tmp;
	LIST_HEAD(unreg);

	list_for_each_entry(kni, doomed, list) {
		kni_req_abort(kni);
		kni_thread_detach(kni);
		napi_disable(&kni->napi);
	}

	rtnl_lock();
	list_for_each_entry(kni, doomed, list) {
		/* The unregistration's RCU grace period covers the NAPI too. */
		__netif_napi_del(&kni->napi);
		unregister_netdevice_queue(kni->netdev, &unreg);
	}
	unregister_netdevice_many(&unreg);
	rtnl_unlock();

	list_for_each_entry_safe(kni, tmp, doomed, list) {
		list_del(&kni->list);
		kni->ctx->nr_devs--;
		/* No ndo can run any more, so nothing can queue this again. */
		cancel_work_sync(&kni->rx_flags_work);
		skb_queue_purge(&kni->tx_backlog);
		kni_return_leftovers(kni);
		kni_dev_free(kni);
	}
}

static struct kni_dev *kni_find(struct kni_net *knet, const char *name)
{
	struct kni_dev *kni;

	list_for_each_entry(kni, &knet->devs, list)
		if (!strncmp(kni->name, name, RTE_KNI_NAMESIZE))
			return kni;
	return NULL;
}

/* Map a FIFO; its length is read once, validated and cached. */
static int kni_map_fifo(struct kni_dev *kni, enum kni_area_id id,
			struct kni_ring *ring, u64 iova)
{
	struct kni_area *area = &kni->areas[id];
	u32 len;
	int ret;

	if (!IS_ALIGNED(iova, sizeof(u64)))
		return -EINVAL;
	ret = kni_area_map(kni, area, iova, sizeof(struct rte_kni_fifo));
	if (ret)
		return ret;
	len = READ_ONCE(((struct rte_kni_fifo *)area->kva)->len);
	kni_area_unmap(area);
	if (len < KNI_FIFO_LEN_MIN || len > KNI_FIFO_LEN_MAX ||
	    !is_power_of_2(len)) {
		netdev_err(kni->netdev, "FIFO length %u is not a power of two in %u..%u\n",
			   len, KNI_FIFO_LEN_MIN, KNI_FIFO_LEN_MAX);
		return -EINVAL;
	}
	ret = kni_area_map(kni, area, iova,
			   sizeof(struct rte_kni_fifo) + (size_t)len * sizeof(u64));
	if (ret)
		return ret;
	ring->fifo = area->kva;
	ring->mask = len - 1;
	return 0;
}

static int kni_map_shared(struct kni_dev *kni,
			  const struct rte_kni_device_info *info)
{
	int ret;

	ret = kni_map_fifo(kni, KNI_AREA_TX, &kni->tx_q, info->tx_phys);
	if (!ret)
		ret = kni_map_fifo(kni, KNI_AREA_RX, &kni->rx_q, info->rx_phys);
	if (!ret)
		ret = kni_map_fifo(kni, KNI_AREA_ALLOC, &kni->alloc_q,
				   info->alloc_phys);
	if (!ret)
		ret = kni_map_fifo(kni, KNI_AREA_FREE, &kni->free_q,
				   info->free_phys);
	if (!ret)
		ret = kni_map_fifo(kni, KNI_AREA_REQ, &kni->req_q,
				   info->req_phys);
	if (!ret)
		ret = kni_map_fifo(kni, KNI_AREA_RESP, &kni->resp_q,
				   info->resp_phys);
	if (!ret)
		ret = kni_area_map(kni, &kni->areas[KNI_AREA_SYNC],
				   info->sync_phys,
				   sizeof(struct rte_kni_request));
	if (ret)
		return ret;
	kni->sync = kni->areas[KNI_AREA_SYNC].kva;
	kni->sync_va = info->sync_va;
	return 0;
}

/* Initial MTU and its bounds, upstream semantics, then sanity-checked. */
static int kni_set_mtu(struct net_device *dev,
		       const struct rte_kni_device_info *info)
{
	if (info->mtu)
		dev->mtu = info->mtu;
	dev->max_mtu = dev->mtu;
	if (info->min_mtu)
		dev->min_mtu = info->min_mtu;
	if (info->max_mtu)
		dev->max_mtu = info->max_mtu;
	if (dev->max_mtu > ETH_MAX_MTU || dev->min_mtu > dev->max_mtu ||
	    dev->mtu < dev->min_mtu || dev->mtu > dev->max_mtu)
		return -EINVAL;
	return 0;
}

static int kni_ioctl_create(struct kni_ctx *ctx, unsigned int cmd,
			    unsigned long arg)
{
	struct kni_net *knet = ctx->knet;
	struct rte_kni_device_info info;
	struct net_device *dev;
	struct kni_dev *kni;
	LIST_HEAD(doomed);
	int ret;

	if (_IOC_SIZE(cmd) > sizeof(info))
		return -EINVAL;
	if (copy_from_user(&info, (void __user *)arg, sizeof(info)))
		return -EFAULT;
	if (strnlen(info.name, sizeof(info.name)) == sizeof(info.name)) {
		pr_err_ratelimited("kni.name not zero-terminated\n");
		return -EINVAL;
	}
	if (info.force_bind &&
	    (info.core_id >= nr_cpu_ids || !cpu_online(info.core_id))) {
		pr_err_ratelimited("cpu %u is not online\n", info.core_id);
		return -EINVAL;
	}
	if (kni_strict_required && !ctx->nr_regions) {
		pr_err_ratelimited("%s: strict=required and no memory registered\n",
				   info.name);
		return -EPERM;
	}
	if (kni_find(knet, info.name))
		return -EINVAL;

	dev = alloc_netdev(sizeof(struct kni_dev), info.name, NET_NAME_USER,
			   kni_netdev_setup);
	if (!dev)
		return -EBUSY;
	dev_net_set(dev, ctx->net);

	kni = netdev_priv(dev);
	kni_netdev_init_priv(kni);
	kni->netdev = dev;
	kni->knet = knet;
	kni->ctx = ctx;
	strscpy(kni->name, info.name, sizeof(kni->name));
	kni->iova_mode = !!info.iova_mode;
	kni->strict = ctx->nr_regions > 0;
	kni->atomic_xlate = kni->strict || !kni->iova_mode;
	kni->mbuf_size = info.mbuf_size;
	kni->core_id = info.core_id;
	kni->force_bind = info.force_bind;
	if (!kni->atomic_xlate) {
		kni->mm = current->mm;
		mmgrab(kni->mm);
	}

	ret = kni_map_shared(kni, &info);
	if (ret) {
		pr_err_ratelimited("%s: cannot map the shared FIFOs (%d)\n", info.name, ret);
		goto err_free;
	}

	if (is_valid_ether_addr(info.mac_addr))
		kni_set_mac(dev, info.mac_addr);
	else
		eth_hw_addr_random(dev);

	ret = kni_set_mtu(dev, &info);
	if (ret) {
		pr_err_ratelimited("%s: inconsistent mtu %u / min_mtu %u / max_mtu %u\n",
				   info.name, info.mtu, info.min_mtu, info.max_mtu);
		goto err_free;
	}

	kni_rx_pages_create(kni);
	kni_napi_add(dev, &kni->napi, kni_napi_poll);
	ret = register_netdev(dev);
	if (ret) {
		pr_err_ratelimited("%s: register_netdev failed (%d)\n", info.name, ret);
		ret = -ENODEV;
		goto err_free;
	}
	netif_carrier_off(dev);
	napi_enable(&kni->napi);

	ret = kni_thread_attach(knet, kni);
	if (ret) {
		pr_err_ratelimited("%s: cannot start the kernel thread (%d)\n",
				   info.name, ret);
		ctx->nr_devs++;
		list_add(&kni->list, &doomed);
		kni_devs_remove(&doomed);
		return -ECANCELED;
	}

	ctx->nr_devs++;
	down_write(&knet->devs_lock);
	list_add_tail(&kni->list, &knet->devs);
	up_write(&knet->devs_lock);
	return 0;

err_free:
	kni_dev_free(kni);
	return ret;
}

static int kni_ioctl_release(struct kni_ctx *ctx, unsigned int cmd,
			     unsigned long arg)
{
	struct kni_net *knet = ctx->knet;
	struct rte_kni_device_info info;
	struct kni_dev *kni;
	LIST_HEAD(doomed);

	if (_IOC_SIZE(cmd) > sizeof(info))
		return -EINVAL;
	if (copy_from_user(&info, (void __user *)arg, sizeof(info)))
		return -EFAULT;
	if (!info.name[0])
		return -EINVAL;

	/* Another opener's device reads as unknown, as upstream answers. */
	down_write(&knet->devs_lock);
	kni = kni_find(knet, info.name);
	if (kni && kni->ctx == ctx)
		list_move(&kni->list, &doomed);
	else
		kni = NULL;
	up_write(&knet->devs_lock);
	if (!kni)
		return -EINVAL;

	kni_devs_remove(&doomed);
	return 0;
}

static int kni_ioctl_register_mem(struct kni_ctx *ctx, unsigned long arg)
{
	struct rte_kni_mem_region region;
	int ret;

	if (copy_from_user(&region, (void __user *)arg, sizeof(region)))
		return -EFAULT;
	/* Devices keep pointers into the regions: register before CREATE. */
	if (ctx->nr_devs)
		return -EBUSY;
	ret = kni_region_register(ctx, &region);
	if (ret)
		return ret;
	if (copy_to_user((void __user *)arg, &region, sizeof(region)))
		return -EFAULT;	/* the region stays registered */
	return 0;
}

static long kni_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct kni_ctx *ctx = file->private_data;
	struct kni_net *knet = ctx->knet;
	long ret;

	/*
	 * Upstream acts in the caller's netns; a caller that moved to another
	 * netns since open() would create devices nobody releases.
	 */
	if (current->nsproxy->net_ns != ctx->net)
		return -EINVAL;

	mutex_lock(&knet->ioctl_lock);
	if (cmd == RTE_KNI_IOCTL_REGISTER_MEM) {
		ret = kni_ioctl_register_mem(ctx, arg);
	} else {
		/* Upstream dispatches on the number only; TEST is -EINVAL. */
		switch (_IOC_NR(cmd)) {
		case _IOC_NR(RTE_KNI_IOCTL_CREATE):
			ret = kni_ioctl_create(ctx, cmd, arg);
			break;
		case _IOC_NR(RTE_KNI_IOCTL_RELEASE):
			ret = kni_ioctl_release(ctx, cmd, arg);
			break;
		default:
			ret = -EINVAL;
			break;
		}
	}
	mutex_unlock(&knet->ioctl_lock);
	return ret;
}

/* 32-bit applications on a 64-bit kernel are not supported (upstream). */
static long kni_compat_ioctl(struct file *file, unsigned int cmd,
			     unsigned long arg)
{
	return -EINVAL;
}

/*
 * One opener per netns as upstream (EBUSY); with multi_open=on any number,
 * each with its own context.
 */
static int kni_open(struct inode *inode, struct file *file)
{
	struct net *net = current->nsproxy->net_ns;
	struct kni_net *knet = kni_net_of(net);
	struct kni_ctx *ctx;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	mutex_lock(&knet->ioctl_lock);
	if (knet->openers && !kni_multi_open) {
		mutex_unlock(&knet->ioctl_lock);
		kfree(ctx);
		return -EBUSY;
	}
	knet->openers++;
	mutex_unlock(&knet->ioctl_lock);

	ctx->net = get_net(net);
	ctx->knet = knet;
	init_waitqueue_head(&ctx->poll_wq);
	file->private_data = ctx;
	return 0;
}

/*
 * Closing /dev/kni removes the devices this opener created; the last
 * opener of the netns also stops its kni_single thread.
 */
static int kni_release(struct inode *inode, struct file *file)
{
	struct kni_ctx *ctx = file->private_data;
	struct kni_net *knet = ctx->knet;
	struct kni_dev *kni, *tmp;
	LIST_HEAD(doomed);

	mutex_lock(&knet->ioctl_lock);
	down_write(&knet->devs_lock);
	list_for_each_entry_safe(kni, tmp, &knet->devs, list)
		if (kni->ctx == ctx)
			list_move_tail(&kni->list, &doomed);
	up_write(&knet->devs_lock);
	kni_devs_remove(&doomed);
	if (!--knet->openers)
		kni_thread_stop_single(knet);
	kni_regions_release(ctx);
	mutex_unlock(&knet->ioctl_lock);

	put_net(ctx->net);
	kfree(ctx);
	return 0;
}

/*
 * Extension: readable while any device of this opener has a request on
 * req_q or frames on tx_q, so an idle opener can sleep in poll() instead
 * of polling the FIFOs.  Never writable: an upstream module, which has no
 * poll, reports every file as readable and writable.
 */
static __poll_t kni_poll(struct file *file, poll_table *wait)
{
	struct kni_ctx *ctx = file->private_data;
	struct kni_net *knet = ctx->knet;
	struct kni_dev *kni;
	__poll_t mask = 0;

	poll_wait(file, &ctx->poll_wq, wait);
	/* Pairs with wq_has_sleeper() in kni_wake_poller(). */
	smp_mb();
	down_read(&knet->devs_lock);
	list_for_each_entry(kni, &knet->devs, list) {
		if (kni->ctx != ctx)
			continue;
		if (kni_ring_count(&kni->req_q) || kni_ring_count(&kni->tx_q)) {
			mask = EPOLLIN | EPOLLRDNORM;
			break;
		}
	}
	up_read(&knet->devs_lock);
	return mask;
}

static const struct file_operations kni_fops = {
	.owner		= THIS_MODULE,
	.open		= kni_open,
	.release	= kni_release,
	.poll		= kni_poll,
	.unlocked_ioctl	= kni_ioctl,
	.compat_ioctl	= kni_compat_ioctl,
};

static struct miscdevice kni_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= KNI_DEVICE,
	.fops	= &kni_fops,
	.mode	= 0600,
};

static int __init kni_init(void)
{
	int ret;

	ret = kni_params_parse();
	if (ret)
		return ret;
	ret = register_pernet_subsys(&kni_net_ops);
	if (ret)
		return ret;
	ret = misc_register(&kni_misc);
	if (ret) {
		pr_err("cannot register misc device /dev/%s (%d)\n",
		       KNI_DEVICE, ret);
		unregister_pernet_subsys(&kni_net_ops);
		return ret;
	}
	kni_params_loaded();
	pr_info("loaded: %s kthread mode, loopback %d, carrier %s%s%s%s\n",
		kni_multiple_kthread ? "multiple" : "single", kni_lo_mode,
		kni_default_carrier ? "on" : "off",
		kni_bifurcated ? ", bifurcated" : "",
		kni_strict_required ? ", strict required" : "",
		kni_multi_open ? ", multi open" : "");
	return 0;
}

static void __exit kni_exit(void)
{
	misc_deregister(&kni_misc);
	unregister_pernet_subsys(&kni_net_ops);
}

module_init(kni_init);
module_exit(kni_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Kernel NIC Interface, DPDK 22.11 compatible");
MODULE_VERSION(KNI_DRV_VERSION);
