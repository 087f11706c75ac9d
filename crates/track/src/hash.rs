//! Content hashes that identify a run's inputs: datasets, splits, model weights, adapters.
//!
//! Hashes, not paths, decide whether two runs used the same thing (`--skip-training` reuses an adapter
//! trained on the same split hash), so every function here is deterministic across machines: files are
//! streamed, trees are walked in sorted order with `/` separators, id lists are hashed as sets.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{io_err, Result};

/// Hex sha256 of a byte slice.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex sha256 of a file's contents, streamed in 1 MiB chunks so multi-GB weights never sit in memory.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Hex sha256 of a set of example ids: sorted and de-duplicated first, so the hash names the set
/// regardless of the order a split was produced in.
pub fn sha256_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut hasher = Sha256::new();
    for id in ids {
        hasher.update(id.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Hex sha256 of every regular file under `dir` (symlinks followed, as in the Hugging Face cache whose
/// snapshot files link into `blobs/`), hidden entries skipped. Equal trees hash equal on any machine:
/// entries are visited in byte order of their `/`-joined relative paths and each contributes
/// `path NUL size NUL sha256 LF`, so renames and moves change the hash too.
pub fn sha256_tree(dir: &Path) -> Result<String> {
    sha256_tree_filtered(dir, |_| true)
}

/// [`sha256_tree`] over the files whose relative path passes `keep`.
pub fn sha256_tree_filtered(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<String> {
    let mut files = Vec::new();
    collect_files(dir, dir, 0, &mut files)?;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = Sha256::new();
    for (rel, path) in files.iter().filter(|(rel, _)| keep(rel)) {
        let size = std::fs::metadata(path).map_err(io_err("stat", path))?.len();
        hasher.update(rel.as_bytes());
        hasher.update(b"\0");
        hasher.update(size.to_string().as_bytes());
        hasher.update(b"\0");
        hasher.update(sha256_file(path)?.as_bytes());
        hasher.update(b"\n");
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The identity of a model's weights: the file's hash for a `.gguf` (or any single file), and for a
/// Hugging Face folder the tree hash of what determines the model's outputs (weights, configs,
/// tokenizer), so a README or download-cache bookkeeping does not change it.
pub fn model_weights_sha256(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(io_err("stat", path))?;
    if meta.is_file() {
        return sha256_file(path);
    }
    sha256_tree_filtered(path, |rel| {
        [".safetensors", ".gguf", ".json", ".model", ".bin", ".txt"]
            .iter()
            .any(|ext| rel.ends_with(ext))
            && !rel.ends_with("README.txt")
    })
}

/// Symlinked directories are followed, so a bound on depth stops a link cycle instead of looping.
const MAX_TREE_DEPTH: usize = 32;

fn collect_files(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<()> {
    if depth > MAX_TREE_DEPTH {
        let why = format!("deeper than {MAX_TREE_DEPTH} levels (symlink cycle?)");
        return Err(io_err("walk", dir)(std::io::Error::other(why)).into());
    }
    let entries = std::fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(io_err("stat", &path))?;
        if meta.is_dir() {
            collect_files(root, &path, depth + 1, out)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .expect("walked paths start with the root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_hash_matches_known_vector_and_streams_past_chunk_size() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("abc");
        std::fs::write(&small, b"abc").unwrap();
        assert_eq!(
            sha256_file(&small).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let big = dir.path().join("big");
        let data: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&big, &data).unwrap();
        assert_eq!(sha256_file(&big).unwrap(), sha256_bytes(&data));
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let err = sha256_file(Path::new("/nonexistent/weights.gguf")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/weights.gguf"),
            "{err}"
        );
    }

    #[test]
    fn id_hash_is_order_and_duplicate_insensitive_but_content_sensitive() {
        let a = sha256_ids(["b", "a", "c"]);
        assert_eq!(a, sha256_ids(["a", "b", "c", "a"]));
        assert_ne!(a, sha256_ids(["a", "b"]));
        // The separator keeps ["ab"] and ["a","b"] apart.
        assert_ne!(sha256_ids(["ab"]), sha256_ids(["a", "b"]));
    }

    fn write(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn tree_hash_is_deterministic_and_sees_content_names_and_moves() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        // Same tree written in a different order.
        write(a.path(), "x/1.json", "one");
        write(a.path(), "y.safetensors", "two");
        write(b.path(), "y.safetensors", "two");
        write(b.path(), "x/1.json", "one");
        let ha = sha256_tree(a.path()).unwrap();
        assert_eq!(ha, sha256_tree(b.path()).unwrap());

        // Hidden entries do not count.
        write(b.path(), ".cache/lock", "z");
        assert_eq!(ha, sha256_tree(b.path()).unwrap());

        // Content change.
        write(b.path(), "x/1.json", "ONE");
        assert_ne!(ha, sha256_tree(b.path()).unwrap());
        write(b.path(), "x/1.json", "one");
        assert_eq!(ha, sha256_tree(b.path()).unwrap());

        // Same bytes under another name.
        std::fs::rename(b.path().join("x/1.json"), b.path().join("x/2.json")).unwrap();
        assert_ne!(ha, sha256_tree(b.path()).unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn tree_hash_follows_symlinks_like_the_hf_cache() {
        let real = tempfile::tempdir().unwrap();
        write(real.path(), "model.safetensors", "w");
        let linked = tempfile::tempdir().unwrap();
        write(linked.path(), "blobs/abc", "w");
        std::fs::create_dir(linked.path().join("snap")).unwrap();
        std::os::unix::fs::symlink(
            linked.path().join("blobs/abc"),
            linked.path().join("snap/model.safetensors"),
        )
        .unwrap();
        assert_eq!(
            sha256_tree(real.path()).unwrap(),
            sha256_tree(&linked.path().join("snap")).unwrap()
        );
    }

    #[test]
    fn model_hash_ignores_docs_and_hashes_single_files_directly() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "model.safetensors", "w");
        write(dir.path(), "tokenizer.json", "{}");
        let h = model_weights_sha256(dir.path()).unwrap();
        write(dir.path(), "README.md", "docs");
        assert_eq!(h, model_weights_sha256(dir.path()).unwrap());
        write(dir.path(), "config.json", "{\"n\":1}");
        assert_ne!(h, model_weights_sha256(dir.path()).unwrap());

        let gguf = dir.path().join("m.gguf");
        std::fs::write(&gguf, b"GGUF").unwrap();
        assert_eq!(model_weights_sha256(&gguf).unwrap(), sha256_bytes(b"GGUF"));
    }
}
