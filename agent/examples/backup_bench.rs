//! `just bench`'s backup steps, each one command so `bench/measure.py` times it and reads its
//! peak memory:
//!
//! - `write DIR [--encrypt]`: stdin becomes the part `parts/data` of a new backup in `DIR`
//!   (age-encrypted with `--encrypt`), then the signed manifest (which hashes every entry again
//!   as stored) — what a backup step's upload and the backup's end cost.
//! - `verify DIR`: what a restore does before and while it reads: the full verification, then
//!   every entry read back (decrypted) to nowhere.
//! - `export DIR OUT`: the archive as one file.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent::backup::archive::{
    self, BackupId, BackupInfo, BackupKind, BackupTrust, BackupWriter, DirStorage, SharedStorage,
};
use anyhow::{Context as _, Result, bail};

fn storage(dir: &Path) -> Result<SharedStorage> {
    Ok(Arc::new(DirStorage::new(dir.join("backups"))?))
}

fn id() -> Result<BackupId> {
    Ok("2026-01-01t00-00-00".parse()?)
}

fn identity(dir: &Path) -> Result<Option<age::x25519::Identity>> {
    let path = dir.join("age.key");
    if !path.exists() {
        return Ok(None);
    }
    let text = fs_err::read_to_string(path)?;
    Ok(Some(text.trim().parse().map_err(|e: &str| anyhow::anyhow!(e))?))
}

fn write(dir: &Path, encrypt: bool) -> Result<()> {
    fs_err::create_dir_all(dir)?;
    let key = keys::SigningKey::generate();
    fs_err::write(dir.join("key.pem"), key.to_pkcs8_pem().as_bytes())?;
    let recipient = if encrypt {
        let identity = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret as _;
        fs_err::write(dir.join("age.key"), identity.to_string().expose_secret())?;
        Some(identity.to_public())
    } else {
        None
    };
    let info = BackupInfo {
        product: "bench".into(),
        app_version: "1.0.0".into(),
        bundle: format!("sha256:{}", "0".repeat(64)),
        sequence: 1,
        source_namespace: "bench".into(),
        kind: BackupKind::Manual,
        revision: None,
    };
    let writer = BackupWriter::create(storage(dir)?, id()?, info, recipient)?;
    let mut sink = writer.entry("parts/data")?;
    let copied = std::io::copy(&mut std::io::stdin().lock(), &mut sink)?;
    sink.finish()?;
    let status = writer.finish(&key)?;
    eprintln!("{copied} bytes in, {} bytes stored", status.size_bytes);
    Ok(())
}

fn trust(dir: &Path) -> Result<BackupTrust> {
    let pem = fs_err::read_to_string(dir.join("key.pem"))?;
    let key = keys::SigningKey::from_pkcs8_pem(&pem, None)?;
    Ok(BackupTrust {
        own: key.public_key(),
        trusted: vec![],
    })
}

fn verify(dir: &Path) -> Result<()> {
    let identity = identity(dir)?;
    let backup = archive::open_verified(storage(dir)?, &id()?, &trust(dir)?, identity.as_ref())?;
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for entry in backup.entries() {
        let mut r = backup.read(entry.path.as_str())?;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    eprintln!("{total} bytes verified and read back");
    Ok(())
}

fn export(dir: &Path, out: &Path) -> Result<()> {
    let file = std::io::BufWriter::with_capacity(1 << 20, fs_err::File::create(out)?);
    let n = archive::export(storage(dir)?, &id()?, &trust(dir)?, file)?;
    eprintln!("{n} bytes exported");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.get(1).context("usage: backup_bench write|verify|export DIR …")?);
    match args.first().map(String::as_str) {
        Some("write") => write(&dir, args.iter().any(|a| a == "--encrypt")),
        Some("verify") => verify(&dir),
        Some("export") => export(&dir, Path::new(args.get(2).context("export DIR OUT")?)),
        _ => bail!("usage: backup_bench write DIR [--encrypt] | verify DIR | export DIR OUT"),
    }
}
