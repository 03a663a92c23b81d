//! NVIDIA GPU discovery through NVML (`nvml-wrapper`, which dlopens `libnvidia-ml.so.1` at
//! run time, so farm builds and runs without a driver).
//!
//! Nothing here fails or panics: a host without a driver gives an empty list and the reason,
//! and each field NVML cannot answer for a device (not supported, no permission, a driver
//! error) is `None` (`null` in JSON) rather than an error for the whole device or host.

use std::ffi::OsStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use serde::Serialize;

/// Where NVML's library is looked for, in order: the loader's search path (the soname the
/// driver installs), then the driver folders of hosts that keep it outside that path.
const LIBRARY_CANDIDATES: &[&str] = &[
    "libnvidia-ml.so.1",
    "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
    "/usr/local/nvidia/lib/libnvidia-ml.so.1",
    "/usr/lib/wsl/lib/libnvidia-ml.so.1",
];

/// The NVIDIA driver of the host and its GPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Nvidia {
    /// The driver version (`550.54.15`); `None` without a driver.
    pub driver: Option<String>,
    /// The highest CUDA version the driver supports (`12.4`).
    pub cuda: Option<String>,
    /// Why no GPU could be listed (no driver, NVML failed to start), or `None`.
    pub error: Option<String>,
}

/// What [`discover`] found: the driver (or why there is none) and the GPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Discovery {
    pub nvidia: Nvidia,
    /// Every GPU NVML sees, in NVML's index order.
    pub gpus: Vec<Gpu>,
}

/// One physical GPU. Every field but `index` is `None` where NVML could not tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// NVML's index (the `N` of `/dev/nvidiaN` is `minor_number`, which usually matches).
    pub index: u32,
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub memory_total_bytes: Option<u64>,
    pub driver_version: Option<String>,
    pub cuda_version: Option<String>,
    /// `00000000:3B:00.0`
    pub pci_bus_id: Option<String>,
    /// The minor number of the device node `/dev/nvidia<minor>`.
    pub minor_number: Option<u32>,
    /// MIG mode now: `enabled` or `disabled` (`None` where the GPU has no MIG).
    pub mig_mode_current: Option<MigMode>,
    /// MIG mode after the next GPU reset.
    pub mig_mode_pending: Option<MigMode>,
    /// The MIG instances, when MIG is enabled.
    pub mig_instances: Vec<MigInstance>,
    /// The enforced power limit, in milliwatts.
    pub power_limit_milliwatts: Option<u32>,
    /// The GPU die temperature, in degrees Celsius.
    pub temperature_celsius: Option<u32>,
    /// The energy used since the driver was last loaded, in millijoules (Volta and newer).
    pub total_energy_millijoules: Option<u64>,
    /// Why the GPU's handle could not be had (then every other field is `None`).
    pub error: Option<String>,
}

/// A MIG mode, as `nvidia-smi` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MigMode {
    Enabled,
    Disabled,
}

impl MigMode {
    /// NVML's `NVML_DEVICE_MIG_DISABLE` (0) or `NVML_DEVICE_MIG_ENABLE` (1).
    fn from_nvml(value: u32) -> MigMode {
        if value == 0 {
            MigMode::Disabled
        } else {
            MigMode::Enabled
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MigMode::Enabled => "enabled",
            MigMode::Disabled => "disabled",
        }
    }
}

/// One MIG device (a GPU instance with a compute instance) of a GPU in MIG mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigInstance {
    /// Its index under the parent GPU.
    pub index: u32,
    /// `MIG-<uuid>`, the name `NVIDIA_VISIBLE_DEVICES` takes.
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub memory_total_bytes: Option<u64>,
}

/// The host's NVIDIA driver and GPUs; never fails (see the module doc).
pub fn discover() -> Discovery {
    match catch_unwind(AssertUnwindSafe(discover_inner)) {
        Ok(discovery) => discovery,
        Err(_) => failed("NVML panicked while listing GPUs".to_owned()),
    }
}

fn failed(error: String) -> Discovery {
    Discovery {
        nvidia: Nvidia {
            error: Some(error),
            ..Nvidia::default()
        },
        gpus: Vec::new(),
    }
}

fn discover_inner() -> Discovery {
    let nvml = match init() {
        Ok(nvml) => nvml,
        Err(error) => return failed(error),
    };
    let driver = nvml.sys_driver_version().ok();
    let cuda = nvml.sys_cuda_driver_version().ok().map(cuda_version);
    let (gpus, error) = match nvml.device_count() {
        Ok(count) => (
            (0..count)
                .map(|index| gpu(&nvml, index, &driver, &cuda))
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(format!("NVML cannot count GPUs: {e}"))),
    };
    Discovery {
        nvidia: Nvidia {
            driver,
            cuda,
            error,
        },
        gpus,
    }
}

/// How [`Nvidia::error`] begins when no driver library could be loaded.
pub const NO_DRIVER: &str = "no NVIDIA driver found";

/// NVML, from the first library candidate that loads and initializes.
fn init() -> Result<Nvml, String> {
    let mut first: Option<NvmlError> = None;
    for candidate in LIBRARY_CANDIDATES {
        match Nvml::builder().lib_path(OsStr::new(candidate)).init() {
            Ok(nvml) => return Ok(nvml),
            // A library that loads but fails to start is the real answer: a driver is
            // installed but not usable (module not loaded, no permission, mismatch).
            Err(e) if !matches!(e, NvmlError::LibloadingError(_)) => {
                return Err(format!(
                    "the NVIDIA driver is installed but NVML cannot start: {e}"
                ));
            }
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(match first {
        Some(NvmlError::LibloadingError(e)) => format!("{NO_DRIVER}: {e}"),
        _ => NO_DRIVER.to_owned(),
    })
}

/// `12040` -> `12.4`
fn cuda_version(version: i32) -> String {
    format!(
        "{}.{}",
        nvml_wrapper::cuda_driver_version_major(version),
        nvml_wrapper::cuda_driver_version_minor(version)
    )
}

fn gpu(nvml: &Nvml, index: u32, driver: &Option<String>, cuda: &Option<String>) -> Gpu {
    let device = match nvml.device_by_index(index) {
        Ok(device) => device,
        Err(e) => {
            return Gpu {
                index,
                error: Some(format!("NVML cannot open GPU {index}: {e}")),
                ..Gpu::default()
            }
        }
    };
    let mig = device.mig_mode().ok();
    let mig_mode_current = mig.as_ref().map(|mode| MigMode::from_nvml(mode.current));
    let mig_instances = if mig_mode_current == Some(MigMode::Enabled) {
        mig_instances(&device)
    } else {
        Vec::new()
    };
    Gpu {
        index,
        uuid: device.uuid().ok(),
        name: device.name().ok(),
        memory_total_bytes: device.memory_info().ok().map(|memory| memory.total),
        driver_version: driver.clone(),
        cuda_version: cuda.clone(),
        pci_bus_id: device.pci_info().ok().map(|pci| pci.bus_id),
        minor_number: device.minor_number().ok(),
        mig_mode_current,
        mig_mode_pending: mig.as_ref().map(|mode| MigMode::from_nvml(mode.pending)),
        mig_instances,
        power_limit_milliwatts: device.enforced_power_limit().ok(),
        temperature_celsius: device.temperature(TemperatureSensor::Gpu).ok(),
        total_energy_millijoules: device.total_energy_consumption().ok(),
        error: None,
    }
}

/// The MIG devices of a GPU in MIG mode; slots without an instance are skipped.
fn mig_instances(device: &Device<'_>) -> Vec<MigInstance> {
    let Ok(count) = device.mig_device_count() else {
        return Vec::new();
    };
    (0..count)
        .filter_map(|index| {
            let mig = device.mig_device_by_index(index).ok()?;
            Some(MigInstance {
                index,
                uuid: mig.uuid().ok(),
                name: mig.name().ok(),
                memory_total_bytes: mig.memory_info().ok().map(|memory| memory.total),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_version_is_major_dot_minor() {
        assert_eq!(cuda_version(12040), "12.4");
        assert_eq!(cuda_version(11080), "11.8");
    }

    #[test]
    fn mig_mode_maps_nvml_values() {
        assert_eq!(MigMode::from_nvml(0), MigMode::Disabled);
        assert_eq!(MigMode::from_nvml(1), MigMode::Enabled);
    }

    #[test]
    fn discover_without_a_driver_says_so_and_lists_nothing() {
        // This test machine has no NVIDIA driver; where one exists the answer is a driver.
        let discovery = discover();
        if discovery.nvidia.driver.is_none() {
            assert!(discovery.gpus.is_empty());
            let error = discovery.nvidia.error.expect("a reason without a driver");
            assert!(error.contains("NVIDIA"), "{error}");
        }
    }
}
