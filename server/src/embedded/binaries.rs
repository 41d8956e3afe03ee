//! Finding PostgreSQL's server binaries on this machine.

use anyhow::bail;
use basalt_core::config::EmbeddedConfig;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Binaries {
    pub initdb: PathBuf,
    pub postgres: PathBuf,
    pub version: String,
}

impl Binaries {
    /// Looks in `embedded.bin_dir`, then PATH, then `pg_config --bindir`, then
    /// `/usr/lib/postgresql/*/bin` (newest major version first).
    pub fn find(config: &EmbeddedConfig) -> anyhow::Result<Binaries> {
        if !config.bin_dir.is_empty() {
            return Self::in_dir(Path::new(&config.bin_dir)).ok_or_else(|| {
                anyhow::anyhow!(
                    "embedded.bin_dir = {} holds no `initdb` and `postgres`; fix BASALT_EMBEDDED_BIN_DIR or leave it empty to search",
                    config.bin_dir
                )
            });
        }
        let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect())
            .unwrap_or_default();
        if let Ok(output) = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
        {
            if output.status.success() {
                candidates.push(PathBuf::from(
                    String::from_utf8_lossy(&output.stdout).trim(),
                ));
            }
        }
        let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
                Some((major, entry.path().join("bin")))
            })
            .collect();
        versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
        candidates.extend(versioned.into_iter().map(|(_, dir)| dir));
        Self::first_in(&candidates)
    }

    /// The first directory of `candidates` that holds the server binaries.
    fn first_in(candidates: &[PathBuf]) -> anyhow::Result<Binaries> {
        if let Some(found) = candidates.iter().find_map(|dir| Self::in_dir(dir)) {
            return Ok(found);
        }
        bail!(
            "no PostgreSQL server binaries (initdb, postgres) were found on PATH, in `pg_config --bindir` \
             or in /usr/lib/postgresql/*/bin.\n  fix: install them with `apt-get install -y postgresql` \
             (Debian/Ubuntu), point BASALT_EMBEDDED_BIN_DIR at their directory, \
             or set DATABASE_URL to use an existing PostgreSQL server"
        )
    }

    fn in_dir(dir: &Path) -> Option<Binaries> {
        let initdb = dir.join("initdb");
        let postgres = dir.join("postgres");
        if !(is_executable(&initdb) && is_executable(&postgres)) {
            return None;
        }
        let output = std::process::Command::new(&postgres)
            .arg("--version")
            .output()
            .ok()?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Some(Binaries {
            initdb,
            postgres,
            version,
        })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_binaries_is_told_how_to_get_them() {
        let empty = std::env::temp_dir();
        let error = Binaries::first_in(&[empty.clone(), empty.join("missing")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("apt-get install -y postgresql"), "{error}");
        assert!(error.contains("DATABASE_URL"), "{error}");
    }

    #[test]
    fn a_wrong_bin_dir_names_the_setting() {
        let config = EmbeddedConfig {
            bin_dir: "/nonexistent/bin".into(),
            os_user: "postgres".into(),
        };
        let error = Binaries::find(&config).unwrap_err().to_string();
        assert!(error.contains("BASALT_EMBEDDED_BIN_DIR"), "{error}");
    }
}
