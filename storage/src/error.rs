//! The crate's one error type.

use std::path::PathBuf;

/// Everything an object store operation can fail with.
#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    /// The object is larger than the store accepts.
    #[error("object of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    ObjectTooLarge { len_bytes: u64, max_bytes: u64 },

    /// The key is longer than the store accepts.
    #[error("key of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    KeyTooLong { len_bytes: usize, max_bytes: usize },

    /// The user name is empty or longer than the store accepts.
    #[error("user name of {len_bytes} bytes is empty or exceeds the limit of {max_bytes} bytes")]
    BadUser { len_bytes: usize, max_bytes: usize },

    /// The user has more objects than one `list` returns.
    #[error("user has more than {max_objects} objects, the most one listing returns")]
    TooManyObjects { max_objects: usize },

    /// A configured limit is out of range (the header block must hold the
    /// longest user and key together).
    #[error("{name} = {value} exceeds the most the object format allows, {max}")]
    LimitTooLarge {
        name: &'static str,
        value: u64,
        max: u64,
    },

    /// The operating system refused an operation.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An object file does not hold what its name promises: a damaged header,
    /// a file shorter than its header says, or a header naming another user
    /// or key. The store returns this rather than data it cannot vouch for.
    #[error("object file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    /// The object a reader was opened on was replaced or removed since, and
    /// the store no longer holds the version the reader stands for: RADOS
    /// keeps one version of an object, so a [`crate::RadosReader`] whose
    /// object is larger than its first read fails this way rather than
    /// return bytes of another version. Open a new reader to read the
    /// object as it is now.
    #[error("object {object} was replaced or removed after it was opened for reading")]
    ObjectChanged { object: String },

    /// A librados call failed. `code` is its return value, a negative
    /// errno (`-2`, ENOENT, for a missing pool); `object` is the RADOS
    /// object name, or what else the operation was about (the config file
    /// when connecting, the pool when opening it).
    #[error("{op} {object}: {message}")]
    Rados {
        op: &'static str,
        object: String,
        code: i32,
        message: String,
    },

    /// A placement was given a node list it cannot use (empty, duplicate
    /// names, an OSD placed on an unknown node).
    #[error("placement config: {reason}")]
    PlacementConfig { reason: String },

    /// Placement found the object's primary OSD on a host that no storage
    /// node in the config runs on.
    #[error("object {object}: primary osd.{osd} is on host {host:?}, where no storage node runs")]
    NoNodeForOsd {
        object: String,
        osd: i32,
        host: String,
    },
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A librados failure with return value `code` (a negative errno).
    pub(crate) fn rados(op: &'static str, object: impl Into<String>, code: i32) -> Self {
        StorageError::Rados {
            op,
            object: object.into(),
            code,
            message: std::io::Error::from_raw_os_error(code.saturating_neg()).to_string(),
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Takes the OS error out of a glommio error, keeping its kind and errno
/// (glommio's own conversion keeps only the kind).
pub(crate) fn os_error(err: glommio::GlommioError<()>) -> std::io::Error {
    match err {
        glommio::GlommioError::IoError(source)
        | glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => std::io::Error::from(other),
    }
}

/// A user name the stores accept: not empty, at most `max_bytes`.
pub(crate) fn check_user(user: &str, max_bytes: usize) -> Result<(), StorageError> {
    if user.is_empty() || user.len() > max_bytes {
        return Err(StorageError::BadUser {
            len_bytes: user.len(),
            max_bytes,
        });
    }
    Ok(())
}

/// A key the stores accept: at most `max_bytes` (empty keys are allowed).
pub(crate) fn check_key(key: &[u8], max_bytes: usize) -> Result<(), StorageError> {
    if key.len() > max_bytes {
        return Err(StorageError::KeyTooLong {
            len_bytes: key.len(),
            max_bytes,
        });
    }
    Ok(())
}

/// An object size the stores accept: at most `max_bytes`.
pub(crate) fn check_object_len(len_bytes: u64, max_bytes: u64) -> Result<(), StorageError> {
    if len_bytes > max_bytes {
        return Err(StorageError::ObjectTooLarge {
            len_bytes,
            max_bytes,
        });
    }
    Ok(())
}
