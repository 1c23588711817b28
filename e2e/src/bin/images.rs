//! `images`: writes the project's container images as archives (run through `e2e/images`, which
//! builds the static binaries first). Four images:
//!
//! - the operator (`/leadership-operator`, `/kubectl-leadership`, user 65532), as
//!   `operator/Dockerfile` makes it;
//! - the sidecar (`/leadership-sidecar` and a static busybox for the hooks' `sh -c`, user 65532),
//!   as `sidecar/Dockerfile` makes it;
//! - the example app (busybox and this machine's curl with the libraries it loads);
//! - the pod sandbox's pause image (a static pause compiled here).

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, bail};
use clap::Parser;
use leadership_e2e::images::{ImageSpec, write_archive};

#[derive(Parser)]
#[command(about = "Writes the project's container images as OCI archives")]
struct Args {
    /// Where the archives go.
    #[arg(long)]
    out: PathBuf,
    /// The tag of the operator and sidecar images (the chart's appVersion).
    #[arg(long)]
    tag: String,
    /// The operator and sidecar repositories' prefix.
    #[arg(long, default_value = "ghcr.io/leadership-dev")]
    registry: String,
    /// The static leadership-operator binary.
    #[arg(long)]
    operator: PathBuf,
    /// The static kubectl-leadership binary.
    #[arg(long)]
    kubectl_leadership: PathBuf,
    /// The static leadership-sidecar binary.
    #[arg(long)]
    sidecar: PathBuf,
    /// A static busybox.
    #[arg(long, default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// The static pause binary.
    #[arg(long)]
    pause: PathBuf,
    /// The curl to put in the example app image (with the libraries `ldd` names).
    #[arg(long, default_value = "/usr/bin/curl")]
    curl: PathBuf,
}

/// The example app's and the pause image's references (local names: they are built here).
const EXAMPLE_APP: &str = "leadership.local/example-app:1.0";
const PAUSE: &str = "leadership.local/pause:1.0";

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let applets = busybox_applets(&args.busybox)?;
    let mut images = Vec::new();

    let mut operator = ImageSpec::new(format!("{}/leadership-operator:{}", args.registry, args.tag));
    operator.file("/leadership-operator", &args.operator, 0o755).file(
        "/kubectl-leadership",
        &args.kubectl_leadership,
        0o755,
    );
    operator.entrypoint = vec!["/leadership-operator".into()];
    operator.user = "65532:65532".into();
    images.push(labelled(operator, "leadership-operator", &args.tag));

    let mut sidecar = ImageSpec::new(format!("{}/leadership-sidecar:{}", args.registry, args.tag));
    with_busybox(&mut sidecar, &args.busybox, &applets);
    sidecar.file("/leadership-sidecar", &args.sidecar, 0o755);
    sidecar.entrypoint = vec!["/leadership-sidecar".into()];
    sidecar.user = "65532:65532".into();
    images.push(labelled(sidecar, "leadership-sidecar", &args.tag));

    let mut app = ImageSpec::new(EXAMPLE_APP);
    with_busybox(&mut app, &args.busybox, &applets);
    app.file("/usr/bin/curl", &args.curl, 0o755);
    for library in shared_libraries(&args.curl)? {
        let path = library.display().to_string();
        app.file(&path, &library, 0o755);
    }
    app.dir("/tmp", 0o1777);
    app.cmd = vec!["sh".into()];
    images.push(labelled(app, "example-app", "1.0"));

    let mut pause = ImageSpec::new(PAUSE);
    pause.file("/pause", &args.pause, 0o755);
    pause.entrypoint = vec!["/pause".into()];
    pause.user = "65535:65535".into();
    images.push(labelled(pause, "pause", "1.0"));

    for image in &images {
        let name = image.labels["org.opencontainers.image.title"].clone();
        let written = write_archive(image, &args.out.join(format!("{name}.tar")))
            .with_context(|| format!("writing {}", image.reference))?;
        println!(
            "{:<55} {:>8.1} MiB  {}  {}",
            image.reference,
            written.layer_bytes as f64 / (1024.0 * 1024.0),
            &written.config_digest[..19],
            written.archive.display()
        );
    }
    Ok(())
}

fn labelled(mut spec: ImageSpec, title: &str, version: &str) -> ImageSpec {
    spec.labels
        .insert("org.opencontainers.image.title".into(), title.into());
    spec.labels
        .insert("org.opencontainers.image.version".into(), version.into());
    spec.labels
        .insert("org.opencontainers.image.licenses".into(), "Apache-2.0".into());
    spec
}

/// Busybox at /bin/busybox with a link for every applet, as `busybox --install -s /bin` makes.
fn with_busybox(spec: &mut ImageSpec, busybox: &Path, applets: &[String]) {
    spec.file("/bin/busybox", busybox, 0o755);
    for applet in applets {
        spec.symlink(&format!("/bin/{applet}"), "/bin/busybox");
    }
}

fn busybox_applets(busybox: &Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    if !output.status.success() {
        bail!("{} --list failed: {}", busybox.display(), output.status);
    }
    let applets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_owned)
        .collect();
    if !applets.iter().any(|a| a == "sh") {
        bail!("{} has no sh applet", busybox.display());
    }
    Ok(applets)
}

/// The libraries a dynamic binary loads, and its loader, as `ldd` finds them.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("running ldd {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut libraries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    if libraries.is_empty() {
        bail!("ldd found no libraries for {}", binary.display());
    }
    Ok(libraries)
}
