//! The lean supervisor's resident set: once it runs, it lets go of the pages of farm's
//! read-only segments that starting up touched (the loader reads the whole relocation
//! table, about 1 MB, and `main` walks code the supervise loop never runs again).
//!
//! `madvise(MADV_DONTNEED)` on a private file mapping that was never written drops the
//! process's page table entries only: the pages stay in the page cache, and one touched
//! again is read back from there, unchanged. Only segments without `PF_W` are released:
//! the writable ones (RELRO's relocated data among them) hold the process's own changes.

use std::ffi::{c_int, c_void};

/// Release the executable's read-only segments (best effort: errors are ignored).
#[allow(unsafe_code)]
pub fn release_read_only_segments() {
    // SAFETY: the callback only reads the `dl_phdr_info` glibc hands it for the duration of
    // the call, and madvises ranges inside segments of the loaded executable.
    unsafe {
        libc::dl_iterate_phdr(Some(release_main_object), std::ptr::null_mut());
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn release_main_object(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    _data: *mut c_void,
) -> c_int {
    // SAFETY: glibc passes a valid `dl_phdr_info` whose `dlpi_phdr` points at `dlpi_phnum`
    // program headers of the object, all valid during the callback.
    let (base, headers) = unsafe {
        let info = &*info;
        (
            info.dlpi_addr as usize,
            std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)),
        )
    };
    // SAFETY: as above; the dynamic section is mapped for the process's whole life.
    if unsafe { has_text_relocations(base, headers) } {
        // The loader wrote into read-only segments: they hold changes, keep them.
        return 1;
    }
    let page = rustix::param::page_size();
    for header in headers {
        if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
            continue;
        }
        // The segment's pages: its mapping starts at the page holding its first byte.
        let start = (base + header.p_vaddr as usize) & !(page - 1);
        let end = (base + (header.p_vaddr + header.p_memsz) as usize).div_ceil(page) * page;
        // SAFETY: [start, end) is one read-only, never-written private file mapping of the
        // executable; MADV_DONTNEED only drops its page table entries.
        unsafe {
            libc::madvise(start as *mut c_void, end - start, libc::MADV_DONTNEED);
        }
    }
    // The first object glibc reports is the executable: stop there.
    1
}

/// Whether the object's dynamic section asks the loader to relocate read-only segments
/// (`DT_TEXTREL`, or `DF_TEXTREL` in `DT_FLAGS`); Rust never emits such relocations, but a
/// segment they touched must not be released.
///
/// # Safety
/// `headers` are the program headers of an object loaded at `base`.
#[allow(unsafe_code)]
unsafe fn has_text_relocations(base: usize, headers: &[libc::Elf64_Phdr]) -> bool {
    const DT_NULL: i64 = 0;
    const DT_TEXTREL: i64 = 22;
    const DT_FLAGS: i64 = 30;
    const DF_TEXTREL: u64 = 0x4;
    let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
        return false;
    };
    let mut entry = (base + dynamic.p_vaddr as usize) as *const [u64; 2];
    loop {
        // SAFETY: the dynamic section is an array of (tag, value) pairs ended by DT_NULL.
        let [tag, value] = unsafe { entry.read() };
        match tag as i64 {
            DT_NULL => return false,
            DT_TEXTREL => return true,
            DT_FLAGS if value & DF_TEXTREL != 0 => return true,
            _ => {}
        }
        // SAFETY: not past DT_NULL yet, so the next pair is in the section.
        entry = unsafe { entry.add(1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Released pages come back unchanged when touched (this test binary's read-only data
    /// and code still work after its own segments are released), and written data stays.
    #[test]
    fn released_segments_read_back_unchanged() {
        static TABLE: [u64; 4096] = {
            let mut table = [0u64; 4096];
            let mut i = 0;
            while i < table.len() {
                table[i] = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                i += 1;
            }
            table
        };
        // Written data lives in the writable segments, which must be kept: a release of
        // those would bring back the file's 1 here.
        static WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        WRITTEN.store(42, std::sync::atomic::Ordering::SeqCst);
        let before: u64 = TABLE.iter().fold(0, |a, v| a ^ v.rotate_left(7));
        release_read_only_segments();
        assert_eq!(WRITTEN.load(std::sync::atomic::Ordering::SeqCst), 42);
        let after: u64 = TABLE.iter().fold(0, |a, v| a ^ v.rotate_left(7));
        assert_eq!(before, after);
        assert_eq!(
            TABLE[4095],
            4095u64.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            "a released page reads back as the file has it"
        );
    }
}
