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
