//! Fixed-length arrays in their own anonymous memory mapping, advised to the kernel for
//! transparent huge pages.
//!
//! The flow table of a worker is one to several hundred MiB that every packet touches at a
//! random place. On 4 KiB pages almost every lookup also misses the TLB (a page walk on top
//! of the cache miss); on 2 MiB pages the TLB covers 512 times more memory. A
//! [`HugeArray`] of 2 MiB or more maps `len * size_of::<T>()` bytes rounded up to 2 MiB at a
//! 2 MiB-aligned address (smaller ones get plain pages), asks for huge pages with `madvise(MADV_HUGEPAGE)` (honoured when
//! `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or `madvise`, the default of
//! most distributions), then writes every element, so all memory is faulted in here and the
//! data path never page-faults. Where the kernel refuses (THP `never`, or fragmented memory)
//! the same memory simply stays on 4 KiB pages: slower, never wrong.
//!
//! The memory comes from the thread that calls [`HugeArray::new`] (first touch), so a
//! worker that builds its own table gets memory on its own NUMA node.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use thiserror::Error;

/// Size and alignment of an x86_64 / aarch64 (4 KiB granule) transparent huge page.
pub const HUGE_PAGE: usize = 2 << 20;

/// Why an array could not be mapped.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HugeArrayError {
    /// `len * size_of::<T>()` overflows.
    #[error("array of {len} elements of {elem} bytes is larger than the address space")]
    TooLarge {
        /// Requested elements.
        len: usize,
        /// Bytes per element.
        elem: usize,
    },
    /// `mmap` failed (out of memory or address space, or a memory limit).
    #[error("cannot map {bytes} bytes: {reason}")]
    Map {
        /// Bytes requested from the kernel.
        bytes: usize,
        /// The OS error.
        reason: String,
    },
}

/// A `[T]` of fixed length in its own anonymous mapping (see the module documentation).
pub struct HugeArray<T> {
    /// First element, at the start of the mapping: 2 MiB aligned from 2 MiB on, page-aligned
    /// below; dangling for an empty array.
    ptr: NonNull<T>,
    len: usize,
    /// Bytes mapped at `ptr`: a multiple of [`HUGE_PAGE`] from 2 MiB on, the array's exact
    /// size below (the kernel rounds it to pages), 0 for an empty array (nothing mapped).
    mapped: usize,
}

// SAFETY: a HugeArray owns its memory exclusively, like a Box<[T]>: moving it to another
// thread moves the ownership, and shared references only give `&[T]`.
unsafe impl<T: Send> Send for HugeArray<T> {}
// SAFETY: as above; `&HugeArray` only gives `&[T]`.
unsafe impl<T: Sync> Sync for HugeArray<T> {}

impl<T: Copy> HugeArray<T> {
    /// `len` copies of `fill`, every page faulted in.
    pub fn new(len: usize, fill: T) -> Result<Self, HugeArrayError> {
        let elem = std::mem::size_of::<T>();
        let bytes = len
            .checked_mul(elem)
            .ok_or(HugeArrayError::TooLarge { len, elem })?;
        assert!(
            std::mem::align_of::<T>() <= 4096,
            "element alignment above the 4 KiB page"
        );
        if bytes == 0 {
            return Ok(Self {
                ptr: NonNull::dangling(),
                len,
                mapped: 0,
            });
        }
        let (start, mapped) = if bytes < HUGE_PAGE {
            // Too small to gain from huge pages: plain pages, no alignment.
            (map_anonymous(bytes)?, bytes)
        } else {
            let mapped = bytes
                .checked_next_multiple_of(HUGE_PAGE)
                .ok_or(HugeArrayError::TooLarge { len, elem })?;
            (map_huge_aligned(mapped)?, mapped)
        };
        let ptr = start as *mut T;
        for i in 0..len {
            // SAFETY: `i < len` and `len * size_of::<T>() <= mapped`, so the write is inside the
            // mapping; `start` is page-aligned (2 MiB for large arrays) and `T`'s alignment is
            // at most 4 KiB (asserted above), so every element is aligned for `T`.
            unsafe { ptr.add(i).write(fill) };
        }
        Ok(Self {
            // SAFETY: `start` is inside a successful mapping, never 0.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            len,
            mapped,
        })
    }

    /// Bytes mapped: the array's size, rounded up to 2 MiB from 2 MiB on.
    pub fn mapped_bytes(&self) -> usize {
        self.mapped
    }
}

/// A private anonymous read-write mapping of `bytes` (> 0) bytes.
fn map_anonymous(bytes: usize) -> Result<usize, HugeArrayError> {
    // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing touches
    // no existing memory.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return Err(HugeArrayError::Map {
            bytes,
            reason: std::io::Error::last_os_error().to_string(),
        });
    }
    Ok(raw as usize)
}

/// A 2 MiB-aligned anonymous mapping of `mapped` bytes (a multiple of [`HUGE_PAGE`]),
/// advised for transparent huge pages.
fn map_huge_aligned(mapped: usize) -> Result<usize, HugeArrayError> {
    // Map one huge page more than needed, so that a 2 MiB-aligned range of `mapped` bytes lies
    // inside, and unmap the rest.
    let span = mapped.checked_add(HUGE_PAGE).ok_or(HugeArrayError::Map {
        bytes: mapped,
        reason: "size overflows".into(),
    })?;
    let base = map_anonymous(span)?;
    let start = base.next_multiple_of(HUGE_PAGE);
    let head = start - base;
    let tail = span - head - mapped;
    // SAFETY: both ranges lie inside the mapping just created and nothing refers to them;
    // `head` and `tail` are multiples of the page size (the base is page-aligned, `start` and
    // `mapped` are 2 MiB multiples). A failure would only leave them mapped (a leak of address
    // space), so the results are ignored.
    unsafe {
        if head > 0 {
            libc::munmap(base as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((start + mapped) as *mut libc::c_void, tail);
        }
        // Advice only: refused where THP is disabled, and the memory works either way.
        libc::madvise(start as *mut libc::c_void, mapped, libc::MADV_HUGEPAGE);
    }
    Ok(start)
}

impl<T> Deref for HugeArray<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points to `len` initialised elements (written in `new`) that live as
        // long as `self`; for an empty array it is a dangling aligned pointer, valid for 0
        // elements.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for HugeArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for HugeArray<T> {
    fn drop(&mut self) {
        if self.mapped > 0 {
            // SAFETY: `ptr..ptr + mapped` is exactly what `new` kept mapped, and no reference
            // into it outlives `self`. Only `new` creates arrays, and it requires `T: Copy`:
            // there is no element destructor to run.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.mapped) };
        }
    }
}

impl<T> fmt::Debug for HugeArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HugeArray")
            .field("len", &self.len)
            .field("mapped", &self.mapped)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_aligned_and_writable() {
        let mut a = HugeArray::new(3 * HUGE_PAGE / 8 + 5, 7u64).unwrap();
        assert_eq!(a.len(), 3 * HUGE_PAGE / 8 + 5);
        assert_eq!(a.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(a.mapped_bytes(), 4 * HUGE_PAGE);
        assert!(a.iter().all(|&x| x == 7));
        let n = a.len();
        a[n - 1] = 9;
        a[0] = 1;
        assert_eq!((a[0], a[1], a[n - 1]), (1, 7, 9));
    }

    #[test]
    fn empty_and_zero_sized() {
        let a = HugeArray::new(0, 1u32).unwrap();
        assert!(a.is_empty());
        assert_eq!(a.mapped_bytes(), 0);
        let z = HugeArray::new(10, ()).unwrap();
        assert_eq!(z.len(), 10);
        assert_eq!(z.mapped_bytes(), 0);
    }

    #[test]
    fn too_large_is_an_error() {
        assert!(matches!(
            HugeArray::new(usize::MAX / 2, 0u64),
            Err(HugeArrayError::TooLarge { .. })
        ));
    }

    /// On a machine where THP is enabled, the mapping gets huge pages (reads the process's
    /// smaps; skipped, with a note, where THP is off).
    #[test]
    fn gets_transparent_huge_pages_when_enabled() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if !(mode.contains("[always]") || mode.contains("[madvise]")) {
            eprintln!("THP disabled here ({mode:?}): nothing to check");
            return;
        }
        let a = HugeArray::new(16 * HUGE_PAGE, 3u8).unwrap();
        let start = a.as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let huge_kb = anon_huge_kb_of(&smaps, start).expect("mapping listed in smaps");
        // The kernel may fall short of huge pages on fragmented memory; at least one of the
        // 16 is expected on any machine that has THP on.
        eprintln!("AnonHugePages of a 32 MiB HugeArray: {huge_kb} kB");
        assert!(huge_kb >= 2048, "no huge page at all: {huge_kb} kB");
    }

    /// `AnonHugePages` (kB) of the smaps entry whose range holds `addr`.
    fn anon_huge_kb_of(smaps: &str, addr: usize) -> Option<u64> {
        let mut inside = false;
        for line in smaps.lines() {
            let range = line
                .split_once(' ')
                .and_then(|(r, _)| r.split_once('-'))
                .and_then(|(a, b)| {
                    Some((
                        usize::from_str_radix(a, 16).ok()?,
                        usize::from_str_radix(b, 16).ok()?,
                    ))
                });
            if let Some((lo, hi)) = range {
                inside = (lo..hi).contains(&addr);
            } else if inside {
                if let Some(v) = line.strip_prefix("AnonHugePages:") {
                    return v.trim().trim_end_matches("kB").trim().parse().ok();
                }
            }
        }
        None
    }
}
