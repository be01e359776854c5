//! Drivers on the node when rustlive is PID 1: which module drives a device ([`modalias`]),
//! loading modules without modprobe ([`kmod`]), compressed module files ([`compressed`], which
//! the initramfs builder shares) and the boot-time scan that ties them together ([`coldplug`]).

pub mod coldplug;
pub mod compressed;
pub mod kmod;
pub mod modalias;
