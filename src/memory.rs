//! What the daemon hands back to the system once it is up: the heap that reading the setup
//! freed, and the pages of code and constants that only starting needed.
//!
//! Starting touches code all over the binary and the C library (the command line, YAML, every
//! check, the migrations, the router), and the kernel maps 64 KiB of the page cache around each
//! page touched; an idle daemon runs a small part of it. The pages given back are clean copies
//! of the executable's and the shared libraries' files, so the kernel would drop them first
//! under memory pressure anyway; giving them back at once keeps the daemon's resident set at
//! what it runs while it waits, and a page needed again is mapped again from the page cache
//! (only this process's mappings change: other processes using the same library keep theirs).
//! It must never touch a writable mapping, the relocated read-only data (RELRO), the vDSO or
//! the allocator's live memory.

/// Gives back what starting left behind; the daemon calls it a few seconds after it is up,
/// once every loop has made its first pass (a reload starts a new daemon, so again after each).
/// Returns the bytes of code and constants unmapped (0 where this is not Linux with glibc, or
/// the executable's segments could not be found).
pub fn give_back_after_start() -> usize {
    return_freed_heap();
    release_startup_code()
}

/// glibc keeps freed memory for reuse, and parsing thousands of workflows frees tens of
/// megabytes the idle daemon never needs again.
fn return_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heaps to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_startup_code() -> usize {
    // SAFETY: sysconf only reads a system constant.
    let page = match usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) {
        Ok(page) if page.is_power_of_two() => page,
        _ => return 0,
    };
    let mut segments: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback only reads the program headers the loader hands it and writes into
    // the Vec passed as `data`.
    unsafe {
        libc::dl_iterate_phdr(Some(read_only_segments), (&raw mut segments).cast());
    }
    let mut released = 0;
    for (start, end) in segments {
        // Inward to whole pages: a page shared with a neighbouring mapping is never touched.
        let (Some(start), end) = (start.checked_next_multiple_of(page), end - end % page) else {
            continue;
        };
        if end <= start {
            continue;
        }
        // SAFETY: [start, end) lies inside a read-only PT_LOAD segment of a loaded file (no
        // PF_W, outside PT_GNU_RELRO): a private mapping of the file nobody writes, so
        // MADV_DONTNEED only unmaps pages that the next access maps again from the same file.
        let done =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if done == 0 {
            released += end - start;
        }
    }
    released
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_startup_code() -> usize {
    0
}

/// `dl_iterate_phdr`'s callback, once per loaded object: the address ranges of its PT_LOAD
/// segments that are neither writable nor relocated at load time. The vDSO is passed over: the
/// kernel's own pages, not a file's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" fn read_only_segments(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the loader passes a valid `dl_phdr_info` whose `dlpi_phdr` points at `dlpi_phnum`
    // headers; `data` is the `Vec` `release_startup_code` passed.
    let (info, segments) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
    // SAFETY: a non-null `dlpi_name` is the object's NUL-terminated path ("" for the
    // executable).
    let vdso = !info.dlpi_name.is_null()
        && unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
            .to_bytes()
            .starts_with(b"linux-vdso");
    if info.dlpi_phdr.is_null() || vdso {
        return 0;
    }
    let headers =
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let base = info.dlpi_addr as usize;
    // (start, end, type, writable) of every header; the header type's width follows the target.
    let ranges: Vec<(usize, usize, u32, bool)> = headers
        .iter()
        .filter_map(|h| {
            let start = base.checked_add(usize::try_from(h.p_vaddr).ok()?)?;
            let end = start.checked_add(usize::try_from(h.p_memsz).ok()?)?;
            Some((start, end, h.p_type, h.p_flags & libc::PF_W != 0))
        })
        .collect();
    let relocated = |start: usize, end: usize| {
        ranges
            .iter()
            .any(|&(s, e, kind, _)| kind == libc::PT_GNU_RELRO && s < end && start < e)
    };
    for &(start, end, kind, writable) in &ranges {
        if kind == libc::PT_LOAD && !writable && !relocated(start, end) {
            segments.push((start, end));
        }
    }
    // Zero: go on with the next object.
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work() -> String {
        let words: Vec<String> = (0..200).map(|i| format!("{i:x}")).collect();
        words.join(",")
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_code_given_back_is_mapped_again_when_it_runs() {
        let before = work();
        let released = give_back_after_start();
        // The test binary's text alone is megabytes: nothing found would mean no segment matched.
        assert!(released > 1 << 20, "released only {released} bytes");
        assert_eq!(work(), before);
        // Constants (a panic message's text, a table) come back from the file unchanged too.
        let parsed: rust_decimal::Decimal = "12345.678".parse().unwrap();
        assert_eq!(parsed.to_string(), "12345.678");
        assert!(give_back_after_start() > 0);
    }
}
