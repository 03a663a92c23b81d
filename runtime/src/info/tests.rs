use super::*;

/// Two packages, two cores each, two threads per core (8 logical, 4 physical).
fn x86_cpuinfo() -> String {
    let mut text = String::new();
    let mut processor = 0;
    for package in 0..2 {
        for _thread in 0..2 {
            for core in 0..2 {
                text.push_str(&format!(
                    "processor\t: {processor}\nvendor_id\t: GenuineIntel\n\
                     model name\t: Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz\n\
                     physical id\t: {package}\nsiblings\t: 4\ncore id\t\t: {core}\n\
                     cpu cores\t: 2\nflags\t\t: fpu vme de\n\n"
                ));
                processor += 1;
            }
        }
    }
    text
}

const ARM_CPUINFO: &str = "processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd\n\
CPU implementer\t: 0x41\n\nprocessor\t: 1\nBogoMIPS\t: 48.00\n\nHardware\t: BCM2835\n";

const MEMINFO: &str = "MemTotal:       16318480 kB\nMemFree:         1234567 kB\n\
MemAvailable:   12000000 kB\nBuffers:          100000 kB\nHugePages_Total:       0\n";

fn fixture(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn cpuinfo_counts_threads_and_distinct_cores_per_package() {
    let (_dir, path) = fixture("cpuinfo", &x86_cpuinfo());
    let cpu = read_cpuinfo(&path);
    assert_eq!(
        cpu.model.as_deref(),
        Some("Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz")
    );
    assert_eq!(cpu.logical_cores, Some(8));
    assert_eq!(cpu.physical_cores, Some(4));
    assert_eq!(cpu.available_cores, None);
}

#[test]
fn cpuinfo_without_core_ids_has_no_physical_count_and_a_fallback_model() {
    let (_dir, path) = fixture("cpuinfo", ARM_CPUINFO);
    let cpu = read_cpuinfo(&path);
    assert_eq!(cpu.model.as_deref(), Some("BCM2835"));
    assert_eq!(cpu.logical_cores, Some(2));
    assert_eq!(cpu.physical_cores, None);
}

#[test]
fn cpuinfo_of_a_missing_or_empty_file_is_all_unknown() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(read_cpuinfo(&dir.path().join("missing")), Cpu::default());
    let (_dir, path) = fixture("cpuinfo", "");
    assert_eq!(read_cpuinfo(&path), Cpu::default());
}

#[test]
fn meminfo_reads_total_and_available_in_bytes() {
    let (_dir, path) = fixture("meminfo", MEMINFO);
    let memory = read_meminfo(&path);
    assert_eq!(memory.total_bytes, Some(16_318_480 * 1024));
    assert_eq!(memory.available_bytes, Some(12_000_000 * 1024));
}

#[test]
fn meminfo_without_mem_available_leaves_it_unknown() {
    // Kernels before 3.14 have no MemAvailable; a garbled MemTotal is unknown too.
    let (_dir, path) = fixture("meminfo", "MemTotal: lots kB\nMemFree: 1 kB\n");
    assert_eq!(read_meminfo(&path), Memory::default());
    // A key that only starts like MemTotal is not MemTotal.
    let memory = parse_meminfo("MemTotalX: 5 kB\nMemTotal: 7 kB\n");
    assert_eq!(memory.total_bytes, Some(7 * 1024));
}

#[test]
fn kernel_version_takes_major_and_minor() {
    assert_eq!(kernel_version("6.18.0-1-amd64"), Some((6, 18)));
    assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
    assert_eq!(kernel_version("5.15"), Some((5, 15)));
    assert_eq!(kernel_version("garbage"), None);
}

#[test]
fn idmapped_answers_follow_the_kernel_version() {
    let old = sandbox(Some("5.10.0"));
    assert!(!old.idmapped_mounts && !old.idmapped_overlay_layers);
    let middle = sandbox(Some("5.15.0-91-generic"));
    assert!(middle.idmapped_mounts && !middle.idmapped_overlay_layers);
    let new = sandbox(Some("6.1.0"));
    assert!(new.idmapped_mounts && new.idmapped_overlay_layers);
    assert_eq!(new.idmapped_from, "kernel_version");
    assert!(!sandbox(None).idmapped_mounts);
}

#[test]
fn filesystems_match_whole_names() {
    let text = "nodev\tsysfs\nnodev\toverlay\n\text4\n";
    assert!(has_filesystem(text, "overlay"));
    assert!(has_filesystem(text, "ext4"));
    assert!(!has_filesystem("nodev\toverlayX\n", "overlay"));
}

#[test]
fn hybrid_is_v1_with_a_unified_mount() {
    assert_eq!(kind_of(CgroupVersion::V1, true), CgroupKind::Hybrid);
    assert_eq!(kind_of(CgroupVersion::V1, false), CgroupKind::V1);
    assert_eq!(kind_of(CgroupVersion::V2, true), CgroupKind::V2);
}

#[test]
fn disk_of_a_root_not_made_yet_measures_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let disk = disk(&dir.path().join("not/made/yet"));
    assert_eq!(disk.path, dir.path().to_str().unwrap());
    let (free, total) = (disk.free_bytes.unwrap(), disk.total_bytes.unwrap());
    assert!(total > 0 && free <= total, "{free} of {total}");
}
