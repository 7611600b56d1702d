//! [`Cluster`]: a connected librados handle and an I/O context on one pool,
//! with the handful of blocking calls the store makes. Errors come back as
//! negative errno values; the store turns them into [`StorageError`]s with
//! the operation and object named.
//!
//! Every method blocks until the cluster answers or the client's op timeout
//! (set at connect) fires. Call them only from the store's worker threads
//! or other threads of the store's own, never from a shard.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;
use std::ptr;

use super::ffi;
use crate::error::StorageError;

/// A negative errno from librados.
pub(crate) type Errno = i32;

/// A client connected to one cluster, with an I/O context on one pool.
pub(crate) struct Cluster {
    rados: ffi::RadosT,
    ioctx: ffi::IoCtxT,
}

// SAFETY: librados handles (`rados_t`, `rados_ioctx_t`) may be used from
// several threads at once; librados serialises internally. Neither is
// touched after `Drop`, which runs once, when the last owner lets go.
unsafe impl Send for Cluster {}
// SAFETY: as above.
unsafe impl Sync for Cluster {}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: both handles were created by `connect` and are released
        // exactly once, the I/O context before the cluster handle.
        unsafe {
            ffi::rados_ioctx_destroy(self.ioctx);
            ffi::rados_shutdown(self.rados);
        }
    }
}

/// What a stat-and-read found.
pub(crate) struct ReadDone {
    /// The object's size.
    pub(crate) size: u64,
    /// Bytes read into the caller's buffer.
    pub(crate) read: usize,
    /// The object's version (RADOS' per-object user version, which every
    /// write or re-creation raises): what a later read asserts to get bytes
    /// of this same version or none.
    pub(crate) version: u64,
}

impl Cluster {
    /// Reads `conf_path`, applies `options` on top, connects as
    /// `client.<client_id>` and opens `pool`, in `namespace` when it is
    /// not empty.
    pub(crate) fn connect(
        conf_path: &Path,
        client_id: &str,
        pool: &str,
        namespace: &str,
        options: &[(&str, String)],
    ) -> Result<Cluster, StorageError> {
        let conf_shown = conf_path.display().to_string();
        let fail = |op: &'static str, code: Errno| StorageError::rados(op, &conf_shown, code);
        let id = c_string(client_id).map_err(|code| fail("naming the client of", code))?;
        let conf = c_string(conf_path.as_os_str().as_encoded_bytes())
            .map_err(|code| fail("reading ceph config", code))?;
        let mut rados: ffi::RadosT = ptr::null_mut();
        // SAFETY: `rados` is a valid out pointer; `id` is a C string.
        let rc = unsafe { ffi::rados_create(&mut rados, id.as_ptr()) };
        if rc < 0 {
            return Err(fail("creating a librados client for", rc));
        }
        // From here on, `rados` is shut down on every error path.
        let configured = (|| {
            // SAFETY: `rados` is a created, unconnected handle; `conf` is a
            // C string.
            let rc = unsafe { ffi::rados_conf_read_file(rados, conf.as_ptr()) };
            if rc < 0 {
                return Err(fail("reading ceph config", rc));
            }
            for (name, value) in options {
                let (c_name, c_value) = match (c_string(name), c_string(value)) {
                    (Ok(n), Ok(v)) => (n, v),
                    (Err(code), _) | (_, Err(code)) => {
                        return Err(fail("setting a client option for", code))
                    }
                };
                // SAFETY: as above.
                let rc = unsafe { ffi::rados_conf_set(rados, c_name.as_ptr(), c_value.as_ptr()) };
                if rc < 0 {
                    return Err(StorageError::rados(
                        "setting client option",
                        format!("{name}={value}"),
                        rc,
                    ));
                }
            }
            // SAFETY: as above. Blocks up to `client_mount_timeout`.
            let rc = unsafe { ffi::rados_connect(rados) };
            if rc < 0 {
                return Err(fail("connecting to the cluster of", rc));
            }
            let c_pool =
                c_string(pool).map_err(|code| StorageError::rados("opening pool", pool, code))?;
            let mut ioctx: ffi::IoCtxT = ptr::null_mut();
            // SAFETY: `rados` is connected; `ioctx` is a valid out pointer.
            let rc = unsafe { ffi::rados_ioctx_create(rados, c_pool.as_ptr(), &mut ioctx) };
            if rc < 0 {
                return Err(StorageError::rados("opening pool", pool, rc));
            }
            if !namespace.is_empty() {
                let c_namespace = match c_string(namespace) {
                    Ok(c_namespace) => c_namespace,
                    Err(code) => {
                        // SAFETY: created above, never shared, released once.
                        unsafe { ffi::rados_ioctx_destroy(ioctx) };
                        return Err(StorageError::rados("setting namespace", namespace, code));
                    }
                };
                // SAFETY: `ioctx` is open and not yet shared; librados
                // copies the name.
                unsafe { ffi::rados_ioctx_set_namespace(ioctx, c_namespace.as_ptr()) };
            }
            Ok(ioctx)
        })();
        match configured {
            Ok(ioctx) => Ok(Cluster { rados, ioctx }),
            Err(e) => {
                // SAFETY: created above, never shared, released once.
                unsafe { ffi::rados_shutdown(rados) };
                Err(e)
            }
        }
    }

    /// The client's value of a config option (from the file, the defaults
    /// or `connect`'s options).
    pub(crate) fn conf_get(&self, option: &str) -> Result<String, Errno> {
        let c_option = c_string(option)?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: `buf` is writable for its length.
        let rc = unsafe {
            ffi::rados_conf_get(
                self.rados,
                c_option.as_ptr(),
                buf.as_mut_ptr().cast::<c_char>(),
                buf.len(),
            )
        };
        if rc < 0 {
            return Err(rc);
        }
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.truncate(len);
        String::from_utf8(buf).map_err(|_| -libc::EINVAL)
    }

    /// Replaces the object with `data` in one atomic operation, creating it
    /// if needed (an empty `data` makes an empty object).
    pub(crate) fn write_full(&self, name: &CStr, data: &[u8]) -> Result<(), Errno> {
        // SAFETY: the op is created and released here; `data` outlives
        // `operate`, which is when librados reads it.
        unsafe {
            let op = ffi::rados_create_write_op();
            if op.is_null() {
                return Err(-libc::ENOMEM);
            }
            ffi::rados_write_op_create(op, ffi::CREATE_IDEMPOTENT, ptr::null());
            ffi::rados_write_op_write_full(op, data.as_ptr().cast::<c_char>(), data.len());
            let rc = ffi::rados_write_op_operate(
                op,
                self.ioctx,
                name.as_ptr(),
                ptr::null_mut(),
                ffi::OPERATION_NOFLAG,
            );
            ffi::rados_release_write_op(op);
            check(rc)
        }
    }

    /// Stats the object and reads up to `len` bytes from `offset` into
    /// `dst`, both in one operation, so size and bytes come from the same
    /// version of the object. `len == 0` only stats. `None` when the object
    /// does not exist.
    ///
    /// With `at_version`, the operation first asserts that the object is
    /// still at that version (from an earlier [`ReadDone`]) and does nothing
    /// else if it is not: it fails with `-ERANGE` (a newer version) or
    /// `-EOVERFLOW` (an older one), or gives `None` (removed).
    ///
    /// Submitted as an aio operation and waited for at once: the same
    /// round trip as `rados_read_op_operate`, and the completion is what
    /// carries the object's version (`rados_get_last_version` would read a
    /// field of the I/O context that other threads' calls overwrite).
    ///
    /// # Safety
    /// `dst` must be valid for writes of `len` bytes, and `len` must be at
    /// most `i32::MAX` (librados' limit for one read).
    pub(crate) unsafe fn stat_and_read(
        &self,
        name: &CStr,
        offset: u64,
        dst: *mut u8,
        len: usize,
        at_version: Option<u64>,
    ) -> Result<Option<ReadDone>, Errno> {
        debug_assert!(len <= i32::MAX as usize);
        let mut size = 0u64;
        let mut mtime: libc::time_t = 0;
        let mut stat_rval: c_int = 0;
        let mut read = 0usize;
        let mut read_rval: c_int = 0;
        // SAFETY: the op, the completion and every out pointer live until
        // the operation has completed (or was never submitted), and are
        // released after that, once; the caller vouches for `dst`.
        let (rc, version) = unsafe {
            let op = ffi::rados_create_read_op();
            if op.is_null() {
                return Err(-libc::ENOMEM);
            }
            if let Some(version) = at_version {
                // First, so that nothing is read from another version.
                ffi::rados_read_op_assert_version(op, version);
            }
            ffi::rados_read_op_stat(op, &mut size, &mut mtime, &mut stat_rval);
            // A read of length 0 would read the whole object.
            if len > 0 {
                ffi::rados_read_op_read(
                    op,
                    offset,
                    len,
                    dst.cast::<c_char>(),
                    &mut read,
                    &mut read_rval,
                );
            }
            let mut completion: ffi::CompletionT = ptr::null_mut();
            let rc = ffi::rados_aio_create_completion2(ptr::null_mut(), None, &mut completion);
            let done = if rc < 0 || completion.is_null() {
                (if rc < 0 { rc } else { -libc::ENOMEM }, 0)
            } else {
                let rc = ffi::rados_aio_read_op_operate(
                    op,
                    self.ioctx,
                    completion,
                    name.as_ptr(),
                    ffi::OPERATION_NOFLAG,
                );
                let done = if rc < 0 {
                    (rc, 0)
                } else {
                    // Returns when the reply is in and every out pointer
                    // written (or the op timeout fired).
                    ffi::rados_aio_wait_for_complete(completion);
                    (
                        ffi::rados_aio_get_return_value(completion),
                        ffi::rados_aio_get_version(completion),
                    )
                };
                ffi::rados_aio_release(completion);
                done
            };
            ffi::rados_release_read_op(op);
            done
        };
        if rc == -libc::ENOENT {
            return Ok(None);
        }
        check(rc)?;
        check(stat_rval)?;
        check(read_rval)?;
        if read > len {
            return Err(-libc::EIO);
        }
        Ok(Some(ReadDone {
            size,
            read,
            version,
        }))
    }

    /// Size of the object, or `None` when it does not exist.
    pub(crate) fn stat(&self, name: &CStr) -> Result<Option<u64>, Errno> {
        let mut size = 0u64;
        let mut mtime: libc::time_t = 0;
        // SAFETY: out pointers valid for the call.
        let rc = unsafe { ffi::rados_stat(self.ioctx, name.as_ptr(), &mut size, &mut mtime) };
        match rc {
            rc if rc == -libc::ENOENT => Ok(None),
            rc => check(rc).map(|()| Some(size)),
        }
    }

    /// Removes the object; `false` when it did not exist.
    pub(crate) fn remove(&self, name: &CStr) -> Result<bool, Errno> {
        // SAFETY: a C string for the call.
        let rc = unsafe { ffi::rados_remove(self.ioctx, name.as_ptr()) };
        match rc {
            rc if rc == -libc::ENOENT => Ok(false),
            rc => check(rc).map(|()| true),
        }
    }

    /// Calls `each` with the rest of every object name in the pool's default
    /// namespace that starts with `prefix`, in the pool's (hash) order. Stops
    /// at the first `Err` from `each`.
    pub(crate) fn list_prefixed<E>(
        &self,
        prefix: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Result<(), E>, Errno> {
        let mut ctx: ffi::ListCtxT = ptr::null_mut();
        // SAFETY: out pointer valid for the call.
        check(unsafe { ffi::rados_nobjects_list_open(self.ioctx, &mut ctx) })?;
        let outcome = loop {
            let mut entry: *const c_char = ptr::null();
            let mut entry_size = 0usize;
            // SAFETY: `ctx` is open; locator and namespace are not asked for.
            let rc = unsafe {
                ffi::rados_nobjects_list_next2(
                    ctx,
                    &mut entry,
                    ptr::null_mut(),
                    ptr::null_mut(),
                    &mut entry_size,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
            if rc == -libc::ENOENT {
                break Ok(Ok(()));
            }
            if rc < 0 {
                break Err(rc);
            }
            if entry.is_null() {
                break Err(-libc::EIO);
            }
            // SAFETY: librados hands out `entry_size` bytes at `entry`, valid
            // until the next call on `ctx`; they are used before that.
            let name = unsafe { std::slice::from_raw_parts(entry.cast::<u8>(), entry_size) };
            if let Some(rest) = name.strip_prefix(prefix) {
                if let Err(e) = each(rest) {
                    break Ok(Err(e));
                }
            }
        };
        // SAFETY: opened above, closed once.
        unsafe { ffi::rados_nobjects_list_close(ctx) };
        outcome
    }

    /// Sends one JSON command to the monitors. Returns the output buffer
    /// (the JSON answer) or, on failure, the errno and the monitor's
    /// status text.
    pub(crate) fn mon_command(&self, command: &str) -> Result<Vec<u8>, (Errno, String)> {
        let c_command = c_string(command).map_err(|code| (code, String::new()))?;
        let mut commands = [c_command.as_ptr()];
        let mut out: *mut c_char = ptr::null_mut();
        let mut out_len = 0usize;
        let mut status: *mut c_char = ptr::null_mut();
        let mut status_len = 0usize;
        // SAFETY: one command, no input; librados allocates the outputs,
        // which are copied and freed here.
        let rc = unsafe {
            ffi::rados_mon_command(
                self.rados,
                commands.as_mut_ptr(),
                1,
                ptr::null(),
                0,
                &mut out,
                &mut out_len,
                &mut status,
                &mut status_len,
            )
        };
        // SAFETY: librados' buffers, `len` bytes each, freed once.
        let take = |buf: *mut c_char, len: usize| unsafe {
            if buf.is_null() {
                return Vec::new();
            }
            let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len).to_vec();
            ffi::rados_buffer_free(buf);
            bytes
        };
        let out = take(out, out_len);
        let status = String::from_utf8_lossy(&take(status, status_len)).into_owned();
        if rc < 0 {
            return Err((rc, status));
        }
        Ok(out)
    }
}

fn check(rc: c_int) -> Result<(), Errno> {
    if rc < 0 {
        Err(rc)
    } else {
        Ok(())
    }
}

/// A C string of `text`; `-EINVAL` when it holds a NUL.
pub(crate) fn c_string(text: impl AsRef<[u8]>) -> Result<CString, Errno> {
    CString::new(text.as_ref()).map_err(|_| -libc::EINVAL)
}
