//! Reading a configuration file: only a regular file, of at most [`MAX_CONFIG_BYTES`].

use std::path::Path;

/// Largest configuration file read (bytes). A real one is a few KiB; 4096 targets with
/// comments stay far below this.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Reads a configuration file: only a regular file (not a FIFO, device or directory, which
/// could block the reader or never end) of at most [`MAX_CONFIG_BYTES`]. Opened non-blocking
/// so that even opening a FIFO returns at once.
pub(super) fn read_config_file(file: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} bytes; a configuration file is at most {MAX_CONFIG_BYTES} bytes",
                meta.len()
            ),
        ));
    }
    let mut text = String::new();
    // A file that grows while read is cut at the limit (and then fails to parse, or is short).
    f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "grew beyond the size limit while read",
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn test_load_refuses_fifos_and_huge_files() {
        let dir = std::env::temp_dir().join(format!("gwlb-cfg-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A FIFO nobody writes to: refused at once, not waited on.
        let fifo = dir.join("fifo.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t0 = std::time::Instant::now();
        let e = Config::load(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        // Larger than the limit: refused before reading it.
        let big = dir.join("big.toml");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        let e = Config::load(&big).unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
        // A directory is no file either.
        let e = Config::load(&dir).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
