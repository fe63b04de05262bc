//! Writes a self-signed certificate and key for local `wss://` runs:
//! `cargo run --example gen-cert -- DIR` writes `DIR/cert.pem` and `DIR/key.pem`, valid for
//! `localhost` and `127.0.0.1`. Serve with `--tls-cert DIR/cert.pem --tls-key DIR/key.pem` and
//! connect bots with `--ca DIR/cert.pem`. For local testing only.

use anyhow::Context;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).context("generating the certificate")?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).with_context(|| format!("writing {}", cert.display()))?;
    std::fs::write(&key, ck.signing_key.serialize_pem())
        .with_context(|| format!("writing {}", key.display()))?;
    eprintln!("wrote {} and {}", cert.display(), key.display());
    Ok(())
}
