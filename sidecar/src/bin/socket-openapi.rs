//! Writes the socket API's OpenAPI document to `docs/socket-api.yaml` (or prints it with `-`).

use std::path::Path;

fn main() -> std::io::Result<()> {
    let text = leadership_sidecar::openapi::render();
    if std::env::args().nth(1).as_deref() == Some("-") {
        print!("{text}");
        return Ok(());
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(leadership_sidecar::openapi::PATH);
    std::fs::write(&path, text)?;
    eprintln!("wrote {}", leadership_sidecar::openapi::PATH);
    Ok(())
}
