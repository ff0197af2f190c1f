//! Reading the files a user names (satflow.yaml, workflows, templates, `${file:…}` secrets) as
//! text, safely: only regular files, never more than a bound, a UTF-8 byte-order mark ignored.
//!
//! A FIFO would block `check` for ever, `/dev/zero` would be read until memory runs out, and a
//! directory or a dangling symlink would give a confusing error: each is refused here with what
//! the path really is. This module reads; it never decides what the text means.

use std::io::Read;
use std::path::Path;

/// The most satflow reads from one file. The largest legitimate files (a config with dozens of
/// wallets, a workflow, an email template, a certificate or a secret) are a few kilobytes; a
/// bound keeps a wrong path (a log, a disk image, `/dev/zero`) from being read into memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What a path is, in words, when it is not a regular file: "a directory", "a FIFO (named
/// pipe)", "a dangling symlink"… `None` for a regular file (through symlinks).
pub fn not_a_file(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => None,
        Ok(meta) => Some(kind_of(&meta.file_type()).to_string()),
        Err(err) => Some(match std::fs::symlink_metadata(path) {
            Ok(link) if link.file_type().is_symlink() => {
                // The link exists but what it points to cannot be reached: gone, or a loop.
                match std::fs::read_link(path) {
                    Ok(target) => format!(
                        "a symlink to {} that cannot be followed ({err})",
                        target.display()
                    ),
                    Err(_) => format!("a symlink that cannot be followed ({err})"),
                }
            }
            Ok(_) => format!("not readable ({err})"),
            Err(_) => format!("missing ({err})"),
        }),
    }
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe), not a regular file";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device, not a regular file";
        }
        if t.is_socket() {
            return "a socket, not a regular file";
        }
    }
    if t.is_dir() {
        "a directory, not a file"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// The text of a regular file of at most `MAX_FILE_BYTES`, without a leading byte-order mark.
/// The error says what is wrong in a few words ("it is a FIFO …", "it is larger than 1 MiB").
pub fn read_text(path: &Path) -> Result<String, String> {
    // Checked before opening: opening a FIFO for reading blocks until a writer comes.
    if let Some(kind) = not_a_file(path) {
        return Err(format!("it is {kind}"));
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // The path may have been replaced between the check and the open: check what was opened.
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("it is {}", kind_of(&meta.file_type())));
    }
    let too_big = || {
        format!(
            "it is larger than {} KiB, more than any satflow file or secret needs; check the path",
            MAX_FILE_BYTES / 1024
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "it is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    // Windows editors start UTF-8 files with a byte-order mark; it is not part of the text.
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_without_their_bom() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.yaml");
        std::fs::write(&p, "\u{feff}a: 1\n").unwrap();
        assert_eq!(read_text(&p).unwrap(), "a: 1\n");
    }

    #[test]
    fn refuses_directories_devices_big_files_and_broken_links() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_text(dir.path()).unwrap_err().contains("a directory"));
        #[cfg(unix)]
        {
            let err = read_text(Path::new("/dev/zero")).unwrap_err();
            assert!(err.contains("a device"), "{err}");
            let link = dir.path().join("dangling");
            std::os::unix::fs::symlink(dir.path().join("gone"), &link).unwrap();
            let err = read_text(&link).unwrap_err();
            assert!(err.contains("symlink"), "{err}");
            let a = dir.path().join("loop-a");
            let b = dir.path().join("loop-b");
            std::os::unix::fs::symlink(&b, &a).unwrap();
            std::os::unix::fs::symlink(&a, &b).unwrap();
            assert!(read_text(&a).unwrap_err().contains("symlink"));
        }
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(
            read_text(&big)
                .unwrap_err()
                .contains("larger than 1024 KiB")
        );
        let missing = dir.path().join("missing");
        assert!(read_text(&missing).unwrap_err().contains("missing"));
    }
}
