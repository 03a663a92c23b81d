//! NVIDIA GPUs for containers, without the NVIDIA container toolkit. Only this module knows
//! about NVIDIA: [`nvml`] discovers GPUs through NVML (for `farm info` and metering),
//! [`request`] reads what a job asks for (`--gpus`, `NVIDIA_*` variables), [`driver`] finds
//! the host's driver tree (device nodes, libraries, binaries, firmware), [`plan`] turns both
//! into the exact devices, device cgroup rules, read-only mounts and symlinks a container
//! gets; [`cdi`] does the same for `--device vendor/class=name` from the host's CDI specs
//! (any vendor's, translated under farm's rules, hooks never run); [`inject`] leases and
//! merges both for `farm run`.

pub mod cdi;
pub mod driver;
pub mod inject;
pub mod nvml;
pub mod plan;
pub mod request;

pub use request::GpuError;
