//! Container images without Docker: an image is one layer written as a reproducible tar (sorted
//! entries, owner root, modification time 0, gzip without a timestamp), its config and manifest,
//! packed as an archive that holds both the OCI image layout (`oci-layout`, `index.json`, `blobs/`)
//! and Docker's `manifest.json`, so `ctr images import`, `docker load`, `kind load image-archive`
//! and `podman load` all take it. The same inputs always give the same digests.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use flate2::{Compression, GzBuilder};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One thing in an image's file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A file copied from this machine, with its mode in the image.
    File {
        /// Where the file comes from.
        source: PathBuf,
        /// Its permission bits in the image.
        mode: u32,
    },
    /// A symbolic link to `target`.
    Symlink {
        /// What the link points to.
        target: String,
    },
    /// An empty directory with this mode (parents of other entries are made 0755 as needed).
    Dir {
        /// Its permission bits.
        mode: u32,
    },
}

/// What an image holds and how its process starts.
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    /// The full reference it is imported under, such as `ghcr.io/org/name:1.0`.
    pub reference: String,
    /// Its files by absolute path in the image.
    pub files: BTreeMap<String, Entry>,
    /// The entrypoint.
    pub entrypoint: Vec<String>,
    /// The default arguments.
    pub cmd: Vec<String>,
    /// The user (and group) it runs as, such as `65532:65532`; empty for root.
    pub user: String,
    /// `NAME=value` environment entries.
    pub env: Vec<String>,
    /// OCI annotations and config labels (`org.opencontainers.image.*`).
    pub labels: BTreeMap<String, String>,
}

impl ImageSpec {
    /// A new image with no files, under `reference`.
    pub fn new(reference: impl Into<String>) -> ImageSpec {
        ImageSpec {
            reference: reference.into(),
            ..ImageSpec::default()
        }
    }

    /// Adds a file copied from `source`.
    pub fn file(&mut self, path: &str, source: impl Into<PathBuf>, mode: u32) -> &mut ImageSpec {
        self.files.insert(
            path.to_owned(),
            Entry::File {
                source: source.into(),
                mode,
            },
        );
        self
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut ImageSpec {
        self.files.insert(
            path.to_owned(),
            Entry::Symlink {
                target: target.to_owned(),
            },
        );
        self
    }

    /// Adds an empty directory.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut ImageSpec {
        self.files.insert(path.to_owned(), Entry::Dir { mode });
        self
    }
}

/// What was written: the archive and the digests a registry or runtime will show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The archive's path.
    pub archive: PathBuf,
    /// The manifest's digest (`sha256:...`).
    pub manifest_digest: String,
    /// The image ID: the config's digest, as `crictl images` and `docker images` show it.
    pub config_digest: String,
    /// The compressed layer's size in bytes.
    pub layer_bytes: u64,
}

/// Errors while writing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The spec cannot be an image.
    #[error("image {reference}: {reason}")]
    Invalid {
        /// The image.
        reference: String,
        /// Why not.
        reason: String,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Every path the layer holds: the entries and each of their parent directories.
fn with_parents(spec: &ImageSpec) -> Result<BTreeMap<String, Entry>, ImageError> {
    let mut all = BTreeMap::new();
    for (path, entry) in &spec.files {
        let relative = path
            .strip_prefix('/')
            .filter(|p| !p.is_empty() && !p.ends_with('/'));
        let Some(relative) =
            relative.filter(|p| !p.split('/').any(|c| c.is_empty() || c == "." || c == ".."))
        else {
            return Err(ImageError::Invalid {
                reference: spec.reference.clone(),
                reason: format!("{path:?} is not an absolute, normal file path"),
            });
        };
        let mut parent = String::new();
        let components: Vec<&str> = relative.split('/').collect();
        for component in &components[..components.len() - 1] {
            parent = if parent.is_empty() {
                (*component).to_owned()
            } else {
                format!("{parent}/{component}")
            };
            all.entry(parent.clone()).or_insert(Entry::Dir { mode: 0o755 });
        }
        all.insert(relative.to_owned(), entry.clone());
    }
    Ok(all)
}

/// The layer as an uncompressed tar: sorted, owned by root, dated 0.
pub fn layer_tar(spec: &ImageSpec) -> Result<Vec<u8>, ImageError> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for (path, entry) in with_parents(spec)? {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match entry {
            Entry::Dir { mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(mode);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{path}/"), io::empty())
                    .map_err(io_error(format!("add {path}/ to the layer")))?;
            }
            Entry::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, &path, &target)
                    .map_err(io_error(format!("add the link {path} to the layer")))?;
            }
            Entry::File { source, mode } => {
                let data = fs::read(&source).map_err(io_error(format!("read {}", source.display())))?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(mode);
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, &path, data.as_slice())
                    .map_err(io_error(format!("add {path} to the layer")))?;
            }
        }
    }
    builder.into_inner().map_err(io_error("finish the layer"))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    // No file name and modification time 0 in the gzip header: the same tar, the same digest.
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    encoder.write_all(bytes).map_err(io_error("compress the layer"))?;
    encoder.finish().map_err(io_error("compress the layer"))
}

/// The image config (the OCI image config, which Docker reads as well).
fn config(spec: &ImageSpec, diff_id: &str) -> Value {
    let mut process = serde_json::Map::new();
    if !spec.entrypoint.is_empty() {
        process.insert("Entrypoint".into(), json!(spec.entrypoint));
    }
    if !spec.cmd.is_empty() {
        process.insert("Cmd".into(), json!(spec.cmd));
    }
    if !spec.user.is_empty() {
        process.insert("User".into(), json!(spec.user));
    }
    let mut env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()];
    env.extend(spec.env.iter().cloned());
    process.insert("Env".into(), json!(env));
    if !spec.labels.is_empty() {
        process.insert("Labels".into(), json!(spec.labels));
    }
    json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": process,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "e2e/images (leadership)" }],
    })
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

fn append_bytes(builder: &mut tar::Builder<fs::File>, path: &str, bytes: &[u8]) -> Result<(), ImageError> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_size(bytes.len() as u64);
    builder
        .append_data(&mut header, path, bytes)
        .map_err(io_error(format!("add {path} to the archive")))
}

/// Writes `spec` as an archive at `out` (OCI image layout plus Docker's `manifest.json`).
pub fn write_archive(spec: &ImageSpec, out: &Path) -> Result<Written, ImageError> {
    let Some((repository, tag)) = split_reference(&spec.reference) else {
        return Err(ImageError::Invalid {
            reference: spec.reference.clone(),
            reason: "a reference is REPOSITORY:TAG".into(),
        });
    };
    let tar = layer_tar(spec)?;
    let diff_id = sha256(&tar);
    let layer = gzip(&tar)?;
    let layer_digest = sha256(&layer);
    let config_bytes = serde_json::to_vec(&config(spec, &diff_id)).expect("a JSON value serialises");
    let config_digest = sha256(&config_bytes);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_bytes.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer.len(),
        }],
        "annotations": spec.labels,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a JSON value serialises");
    let manifest_digest = sha256(&manifest_bytes);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": {
                "io.containerd.image.name": spec.reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });
    let docker_manifest = json!([{
        "Config": blob_path(&config_digest),
        "RepoTags": [format!("{repository}:{tag}")],
        "Layers": [blob_path(&layer_digest)],
    }]);

    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).map_err(io_error(format!("create {}", parent.display())))?;
    }
    let partial = out.with_extension("tar.partial");
    let file = fs::File::create(&partial).map_err(io_error(format!("create {}", partial.display())))?;
    let mut builder = tar::Builder::new(file);
    append_bytes(&mut builder, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    append_bytes(
        &mut builder,
        "index.json",
        &serde_json::to_vec(&index).expect("JSON"),
    )?;
    append_bytes(
        &mut builder,
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).expect("JSON"),
    )?;
    append_bytes(&mut builder, &blob_path(&manifest_digest), &manifest_bytes)?;
    append_bytes(&mut builder, &blob_path(&config_digest), &config_bytes)?;
    append_bytes(&mut builder, &blob_path(&layer_digest), &layer)?;
    builder
        .into_inner()
        .and_then(|file| file.sync_all())
        .map_err(io_error(format!("write {}", partial.display())))?;
    fs::rename(&partial, out).map_err(io_error(format!("rename to {}", out.display())))?;
    Ok(Written {
        archive: out.to_owned(),
        manifest_digest,
        config_digest,
        layer_bytes: layer.len() as u64,
    })
}

/// `REPOSITORY:TAG` split at the tag's colon (a registry's port is not a tag).
pub fn split_reference(reference: &str) -> Option<(&str, &str)> {
    let (repository, tag) = reference.rsplit_once(':')?;
    (!repository.is_empty() && !tag.is_empty() && !tag.contains('/')).then_some((repository, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> ImageSpec {
        let binary = dir.join("tool");
        fs::write(&binary, b"#!/bin/sh\necho hi\n").unwrap();
        let mut spec = ImageSpec::new("example.invalid/tool:1.0");
        spec.file("/bin/busybox", &binary, 0o755)
            .symlink("/bin/sh", "/bin/busybox")
            .dir("/tmp", 0o1777);
        spec.entrypoint = vec!["/bin/sh".into()];
        spec.user = "65532:65532".into();
        spec
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("leadership-images-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_same_inputs_give_the_same_digests() {
        let dir = temp_dir("same");
        let first = write_archive(&spec(&dir), &dir.join("a.tar")).unwrap();
        let second = write_archive(&spec(&dir), &dir.join("b.tar")).unwrap();
        assert_eq!(first.manifest_digest, second.manifest_digest);
        assert_eq!(first.config_digest, second.config_digest);
        assert_eq!(
            fs::read(dir.join("a.tar")).unwrap(),
            fs::read(dir.join("b.tar")).unwrap()
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_layer_holds_parents_files_and_links_owned_by_root() {
        let dir = temp_dir("layer");
        let tar = layer_tar(&spec(&dir)).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u64, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.uid().unwrap(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["bin/", "bin/busybox", "bin/sh", "tmp/"]);
        assert!(entries.iter().all(|e| e.1 == 0 && e.3 == 0));
        assert_eq!(entries[1].2, 0o755);
        assert_eq!(entries[3].2, 0o1777);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_archive_names_the_image_for_containerd_and_docker() {
        let dir = temp_dir("names");
        let written = write_archive(&spec(&dir), &dir.join("image.tar")).unwrap();
        let mut archive = tar::Archive::new(fs::File::open(&written.archive).unwrap());
        let mut files = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut body = Vec::new();
            io::Read::read_to_end(&mut entry, &mut body).unwrap();
            files.insert(entry.path().unwrap().display().to_string(), body);
        }
        let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let manifest = &index["manifests"][0];
        assert_eq!(
            manifest["annotations"]["io.containerd.image.name"],
            "example.invalid/tool:1.0"
        );
        assert_eq!(manifest["digest"], written.manifest_digest.as_str());
        let docker: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(docker[0]["RepoTags"][0], "example.invalid/tool:1.0");
        // Every blob is stored under its own digest.
        for (name, body) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                assert_eq!(sha256(body), format!("sha256:{hex}"));
            }
        }
        let config: Value = serde_json::from_slice(&files[&blob_path(&written.config_digest)]).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Entrypoint"][0], "/bin/sh");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_paths_and_references_are_refused() {
        let mut bad = ImageSpec::new("example.invalid/tool:1.0");
        bad.dir("relative/path", 0o755);
        assert!(matches!(layer_tar(&bad), Err(ImageError::Invalid { .. })));
        let mut dots = ImageSpec::new("example.invalid/tool:1.0");
        dots.dir("/a/../b", 0o755);
        assert!(matches!(layer_tar(&dots), Err(ImageError::Invalid { .. })));
        assert_eq!(split_reference("localhost:5000/x"), None);
        assert_eq!(
            split_reference("localhost:5000/x:1"),
            Some(("localhost:5000/x", "1"))
        );
    }
}
