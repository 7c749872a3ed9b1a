//! `sealift-bundler sign`: co-sign a bundle by rewriting only its head, or sign detached
//! (print the bytes to sign, then attach a signature made elsewhere).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use schemas::head::Head;
use schemas::tar_header::{self, BLOCK};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file, changed in place (only its head).
    pub file: PathBuf,
    /// Sign with this key (PKCS#8 PEM); repeatable.
    #[arg(long = "key", conflicts_with_all = ["print_pae", "attach"])]
    pub keys: Vec<PathBuf>,
    /// Write the exact bytes to sign (DSSE PAE of the manifest) to this file, for openssl, an HSM or a KMS.
    #[arg(long, value_name = "FILE")]
    pub print_pae: Option<PathBuf>,
    /// Attach a raw 64-byte ed25519 signature made over the PAE bytes.
    #[arg(long, value_name = "SIG", requires = "public_key")]
    pub attach: Option<PathBuf>,
    /// The public key (SPKI PEM) of the attached signature; it is checked before attaching.
    #[arg(long = "pub", value_name = "PUB")]
    pub public_key: Option<PathBuf>,
}

fn read_head(file: &mut std::fs::File) -> Result<(Head, usize)> {
    let mut header = [0u8; BLOCK];
    file.read_exact(&mut header)
        .context("cannot read the bundle's first header")?;
    let size = tar_header::parse(&header)
        .size
        .context("the first header has no valid size")?;
    if tar_header::first_difference(&header, schemas::entry::HEAD_PATH, size).is_some() {
        bail!("the first entry is not a Sealift head");
    }
    let mut entry = vec![0u8; usize::try_from(size)?];
    file.read_exact(&mut entry).context("cannot read the head")?;
    Ok((Head::from_entry(&entry)?, entry.len()))
}

pub fn run(args: Args) -> Result<()> {
    let mut file = fs_err::OpenOptions::new()
        .read(true)
        .write(args.print_pae.is_none())
        .open(&args.file)?
        .into_parts()
        .0;
    let (mut head, size) = read_head(&mut file)?;
    if let Some(out) = &args.print_pae {
        fs_err::write(out, head.release.pae_bytes())?;
        eprintln!(
            "wrote {} bytes to sign to {}\nsign them, e.g.: openssl pkeyutl -sign -inkey release.key -rawin -in {} -out sig.bin\nthen: sealift-bundler sign {} --attach sig.bin --pub release.pub",
            head.release.pae_bytes().len(),
            out.display(),
            out.display(),
            args.file.display()
        );
        return Ok(());
    }
    if let Some(sig_path) = &args.attach {
        let pub_path = args.public_key.as_ref().context("--attach needs --pub")?;
        let key = keys::PublicKey::load(pub_path)?;
        let sig = fs_err::read(sig_path)?;
        key.verify(&head.release.pae_bytes(), &sig).with_context(|| {
            format!(
                "signature {} does not verify with {} over this bundle",
                sig_path.display(),
                pub_path.display()
            )
        })?;
        head.release.attach(key.key_id(), sig)?;
        eprintln!("attached signature by {}", key.key_id());
    } else {
        if args.keys.is_empty() {
            bail!("nothing to do\nhint: pass --key K to co-sign, or --print-pae / --attach for detached signing");
        }
        for path in &args.keys {
            let key = keys::SigningKey::load(path, keys::PASSPHRASE_ENV)?;
            head.release
                .sign(&key)
                .with_context(|| format!("cannot sign with {}", path.display()))?;
            eprintln!("signed by {}", key.key_id());
        }
    }
    let entry = head.to_entry_of_size(size).with_context(|| {
        format!("the head has no room left for another signature ({size} bytes reserved)\nhint: rebuild the bundle with all keys")
    })?;
    file.seek(SeekFrom::Start(BLOCK as u64))?;
    file.write_all(&entry)?;
    file.sync_all()?;
    Ok(())
}
