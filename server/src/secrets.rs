//! Secrets Basalt generates for itself on first run (the JWT secret when none is
//! configured, the embedded PostgreSQL password), kept in `<data-dir>/secrets.toml`
//! with mode 0600 so restarts keep sessions and the cluster valid.

use anyhow::Context;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Serialize, Deserialize)]
pub struct Secrets {
    pub jwt_secret: String,
    pub postgres_password: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// Creates the data directory if needed. When the embedded cluster runs as
/// another user, that user must be able to pass through it (mode 0711).
pub fn ensure_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let mode = std::fs::metadata(data_dir)?.permissions().mode() & 0o777;
    if mode & 0o011 != 0o011 || mode & 0o066 != 0 {
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("cannot set the mode of {}", data_dir.display()))?;
    }
    Ok(())
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets.toml")
}

/// Reads the secrets file, or creates it (mode 0600) with fresh random values.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Secrets> {
    ensure_data_dir(data_dir)?;
    let file = path(data_dir);
    if file.exists() {
        let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} is readable by other users (mode {mode:o}); run `chmod 600 {}`",
                file.display(),
                file.display()
            );
        }
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        return toml::from_str(&text)
            .with_context(|| format!("{} is damaged; restore it from a backup", file.display()));
    }
    let secrets = Secrets {
        jwt_secret: random_hex(32),
        postgres_password: random_hex(24),
    };
    let temporary = data_dir.join(".secrets.toml.tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    out.write_all(toml::to_string(&secrets)?.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&temporary, &file)?;
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_0600_and_reread_unchanged() {
        let dir = std::env::temp_dir().join(format!("basalt-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create(&dir).unwrap();
        assert_eq!(first.jwt_secret.len(), 64);
        let mode = std::fs::metadata(path(&dir)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = load_or_create(&dir).unwrap();
        assert_eq!(first.jwt_secret, second.jwt_secret);
        assert!(!format!("{second:?}").contains(&second.jwt_secret));
        std::fs::set_permissions(path(&dir), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create(&dir)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
