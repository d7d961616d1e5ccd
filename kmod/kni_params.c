// SPDX-License-Identifier: GPL-2.0-only
/*
 * kni_params.c - module parameters, with upstream names, values and
 * defaults.  Invalid values refuse the load with a message naming the
 * parameter.  The string parameters are parsed once at load (as
 * upstream); the scheduling intervals may also be changed at runtime
 * through sysfs, validated against each other.
 */
#include <linux/moduleparam.h>
#include <linux/string.h>

#include "kni_dev.h"

/* A string parameter, parsed at load: its variable, sysfs mode and description. */
#define KNI_STRING_PARAM(name, mode, desc)	\
	static char *name;			\
	module_param(name, charp, mode);	\
	MODULE_PARM_DESC(name, desc)

KNI_STRING_PARAM(lo_mode, 0644,
		 "Loopback mode (default=lo_mode_none): lo_mode_none, lo_mode_fifo, lo_mode_fifo_skb");
KNI_STRING_PARAM(kthread_mode, 0644,
		 "Kernel thread mode (default=single): single (one kni_single thread per netns), multiple (one kni_<ifname> thread per interface)");
KNI_STRING_PARAM(carrier, 0644,
		 "Carrier state when an interface is brought up (default=off): off, on");
KNI_STRING_PARAM(enable_bifurcated, 0644,
		 "Release RTNL while waiting for userspace and take interfaces down asynchronously (default=disabled): on");
KNI_STRING_PARAM(strict, 0444,
		 "Strict memory registration (default=auto): auto (devices created after RTE_KNI_IOCTL_REGISTER_MEM are strict), required (CREATE fails with EPERM without registered memory)");
KNI_STRING_PARAM(multi_open, 0444,
		 "Openers of /dev/kni per network namespace (default=off): off (one, a second open gets EBUSY, as upstream), on (several, each owning the interfaces it created)");

enum kni_lo_mode kni_lo_mode = KNI_LO_NONE;
bool kni_multiple_kthread;
bool kni_default_carrier;
bool kni_bifurcated;
bool kni_strict_required;
bool kni_multi_open;
unsigned long kni_min_interval_us = 100;
unsigned long kni_max_interval_us = 200;

unsigned long kni_idle_interval_us = 20000;

static bool kni_loaded;

/* Intervals: range-checked always, min < max checked again at runtime. */
static int kni_interval_set(const char *val, const struct kernel_param *kp,
			    bool is_min)
{
	unsigned long us;
	int ret;

	ret = kstrtoul(val, 0, &us);
	if (ret || us > KNI_INTERVAL_MAX_US) {
		pr_err("%s: invalid value '%s', must be 0..%d microseconds\n",
		       kp->name, val, KNI_INTERVAL_MAX_US);
		return -EINVAL;
	}
	if (kni_loaded &&
	    (is_min ? us >= READ_ONCE(kni_max_interval_us)
		    : us <= READ_ONCE(kni_min_interval_us))) {
		pr_err("%s: %lu rejected, min_scheduling_interval (%lu) must stay below max_scheduling_interval (%lu)\n",
		       kp->name, us,
		       is_min ? us : READ_ONCE(kni_min_interval_us),
		       is_min ? READ_ONCE(kni_max_interval_us) : us);
		return -EINVAL;
	}
	WRITE_ONCE(*(unsigned long *)kp->arg, us);
	return 0;
}

static int kni_min_interval_set(const char *val, const struct kernel_param *kp)
{
	return kni_interval_set(val, kp, true);
}

static int kni_max_interval_set(const char *val, const struct kernel_param *kp)
{
	return kni_interval_set(val, kp, false);
}

static const struct kernel_param_ops kni_min_interval_ops = {
	.set = kni_min_interval_set,
	.get = param_get_ulong,
};

static const struct kernel_param_ops kni_max_interval_ops = {
	.set = kni_max_interval_set,
	.get = param_get_ulong,
};

module_param_cb(min_scheduling_interval, &kni_min_interval_ops,
		&kni_min_interval_us, 0644);
MODULE_PARM_DESC(min_scheduling_interval,
		 "Shortest kthread sleep when idle, in microseconds (default=100, 0..1000000, below max; writable at runtime)");
module_param_cb(max_scheduling_interval, &kni_max_interval_ops,
		&kni_max_interval_us, 0644);
MODULE_PARM_DESC(max_scheduling_interval,
		 "Longest kthread sleep when idle, in microseconds (default=200, 0..1000000, above min; writable at runtime)");

static int kni_idle_interval_set(const char *val, const struct kernel_param *kp)
{
	unsigned long us;

	if (kstrtoul(val, 0, &us) || us > KNI_INTERVAL_MAX_US) {
		pr_err("%s: invalid value '%s', must be 0..%d microseconds\n",
		       kp->name, val, KNI_INTERVAL_MAX_US);
		return -EINVAL;
	}
	WRITE_ONCE(kni_idle_interval_us, us);
	return 0;
}

static const struct kernel_param_ops kni_idle_interval_ops = {
	.set = kni_idle_interval_set,
	.get = param_get_ulong,
};

/* Extension: how far the backoff goes once everything has been idle. */
module_param_cb(idle_scheduling_interval, &kni_idle_interval_ops,
		&kni_idle_interval_us, 0644);
MODULE_PARM_DESC(idle_scheduling_interval,
		 "Longest kthread sleep once the rings have been silent for a while (sleeps grow to 1/16 of the silence, up to this), in microseconds (default=20000, 0..1000000; at or below max_scheduling_interval: no deep idle; writable at runtime)");

/* Returns 0 and the index of val in choices, or -EINVAL. */
static int kni_param_choice(const char *name, const char *val,
			    const char *const *choices, int nr_choices,
			    int *index)
{
	int i;

	for (i = 0; i < nr_choices; i++) {
		if (!strcmp(val, choices[i])) {
			*index = i;
			return 0;
		}
	}
	pr_err("%s: invalid value '%s'\n", name, val);
	return -EINVAL;
}

int kni_params_parse(void)
{
	static const char *const lo_modes[] = {
		"lo_mode_none", "lo_mode_fifo", "lo_mode_fifo_skb"
	};
	static const char *const kthread_modes[] = { "single", "multiple" };
	static const char *const carriers[] = { "off", "on" };
	static const char *const bifurcated[] = { "on" };
	static const char *const stricts[] = { "auto", "required" };
	static const char *const multi_opens[] = { "off", "on" };
	int idx, ret;

	if (lo_mode) {
		ret = kni_param_choice("lo_mode", lo_mode, lo_modes,
				       ARRAY_SIZE(lo_modes), &idx);
		if (ret)
			return ret;
		kni_lo_mode = idx;
	}
	if (kthread_mode) {
		ret = kni_param_choice("kthread_mode", kthread_mode,
				       kthread_modes, ARRAY_SIZE(kthread_modes),
				       &idx);
		if (ret)
			return ret;
		kni_multiple_kthread = idx == 1;
	}
	if (carrier) {
		ret = kni_param_choice("carrier", carrier, carriers,
				       ARRAY_SIZE(carriers), &idx);
		if (ret)
			return ret;
		kni_default_carrier = idx == 1;
	}
	if (enable_bifurcated) {
		ret = kni_param_choice("enable_bifurcated", enable_bifurcated,
				       bifurcated, ARRAY_SIZE(bifurcated), &idx);
		if (ret)
			return ret;
		kni_bifurcated = true;
	}
	if (strict) {
		ret = kni_param_choice("strict", strict, stricts,
				       ARRAY_SIZE(stricts), &idx);
		if (ret)
			return ret;
		kni_strict_required = idx == 1;
	}
	if (multi_open) {
		ret = kni_param_choice("multi_open", multi_open, multi_opens,
				       ARRAY_SIZE(multi_opens), &idx);
		if (ret)
			return ret;
		kni_multi_open = idx == 1;
	}
	if (kni_min_interval_us >= kni_max_interval_us) {
		pr_err("min_scheduling_interval (%lu) must be below max_scheduling_interval (%lu)\n",
		       kni_min_interval_us, kni_max_interval_us);
		return -EINVAL;
	}
	return 0;
}

/* From now on interval writes are checked against each other. */
void kni_params_loaded(void)
{
	kni_loaded = true;
}
