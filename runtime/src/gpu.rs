//! NVIDIA GPUs: discovery through NVML ([`nvml`]). Only this module knows about NVIDIA.

pub mod nvml;
