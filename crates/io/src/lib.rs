//! orrery-io: outputs appear whole or not at all. A file is written to a temporary file in the target's folder
//! (same filesystem, so the final rename is atomic) and renamed over the target only once it is complete; on any
//! error the temporary file is removed and an existing target is left untouched.

use std::path::Path;

/// A temporary file beside `target`, to be committed with [`AtomicFile::commit`].
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
}

impl AtomicFile {
    pub fn create(target: &Path) -> std::io::Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".orrery-").suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The mode of a file made by File::create (0666 less the umask), not tempfile's private 0600.
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the folder {} does not exist", dir.display()),
            ));
        }
        let tmp = builder.tempfile_in(dir)?;
        Ok(Self { tmp })
    }

    pub fn file(&self) -> &std::fs::File {
        self.tmp.as_file()
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Flushes the data to disk and renames the file to `target`.
    pub fn commit(self, target: &Path) -> std::io::Result<()> {
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(target).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Checks, before long work, that `target` can be written: its folder exists and takes a new file, and it is not a
/// folder itself. Nothing is left behind.
pub fn check_writable(target: &Path) -> std::io::Result<()> {
    if target.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            format!("{} is a folder", target.display()),
        ));
    }
    AtomicFile::create(target).map(drop)
}

/// Writes `bytes` to `path` through an [`AtomicFile`]: the file appears complete or not at all.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = AtomicFile::create(path)?;
    std::io::Write::write_all(&mut tmp.file(), bytes)?;
    tmp.commit(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn commit_replaces_and_drop_discards() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        std::fs::write(&target, b"old").unwrap();
        let f = AtomicFile::create(&target).unwrap();
        f.file().write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        let f = AtomicFile::create(&target).unwrap();
        f.file().write_all(b"new").unwrap();
        f.commit(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-folder");
        let err = write_atomically(&missing.join("out.bin"), b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(err.to_string().contains("no-such-folder"), "{err}");
        assert!(!missing.exists());
    }

    #[cfg(unix)]
    #[test]
    fn outputs_get_the_mode_of_an_ordinary_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let atomic = dir.path().join("atomic");
        write_atomically(&atomic, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&atomic), mode(&plain));
    }
}
