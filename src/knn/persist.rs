//! Saving and loading models: versioned JSON, written atomically.
//!
//! The header (`format`, `version`, `kind`) is read before the model, so a file from
//! another format version or of another model kind fails with a precise error
//! instead of a serde message about a missing field.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const FORMAT: &str = "sparkbook-knn";
/// Bump when the serialised layout of a model changes.
pub(crate) const VERSION: u32 = 1;

#[derive(Serialize)]
struct Envelope<'a, M> {
    format: &'a str,
    version: u32,
    kind: &'a str,
    model: &'a M,
}

#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
    kind: String,
}

#[derive(Deserialize)]
struct Body<M> {
    model: M,
}

pub(crate) fn save<M: Serialize>(path: &Path, kind: &str, model: &M) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::other("not a file name")))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> Result<()> {
        let file = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut out = BufWriter::new(file);
        let envelope = Envelope {
            format: FORMAT,
            version: VERSION,
            kind,
            model,
        };
        serde_json::to_writer(&mut out, &envelope)
            .map_err(|e| Error::io(&tmp, std::io::Error::other(e)))?;
        out.flush().map_err(|e| Error::io(&tmp, e))?;
        out.get_ref().sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

pub(crate) fn load<M: DeserializeOwned>(path: &Path, kind: &str) -> Result<M> {
    let shown = path.display().to_string();
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let header: Header = serde_json::from_slice(&bytes).map_err(|e| Error::ModelFile {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    if header.format != FORMAT {
        return Err(Error::ModelFile {
            path: shown,
            reason: format!("format is `{}`, expected `{FORMAT}`", header.format),
        });
    }
    if header.version != VERSION {
        return Err(Error::ModelVersion {
            path: shown,
            found: header.version,
            supported: VERSION,
        });
    }
    if header.kind != kind {
        return Err(Error::ModelFile {
            path: shown,
            reason: format!("the file holds a {}, not a {kind}", header.kind),
        });
    }
    let body: Body<M> = serde_json::from_slice(&bytes).map_err(|e| Error::ModelFile {
        path: shown,
        reason: e.to_string(),
    })?;
    Ok(body.model)
}
