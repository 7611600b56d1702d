//! The part of librados' C API (`rados/librados.h`, Ceph 16) that the store
//! calls. Declared here rather than taken from a bindings crate so that each
//! signature is checked against the header once, by hand, and nothing else
//! is linked in.
//!
//! Every function here blocks the calling thread until the cluster answers
//! (or the client's op timeout fires), or starts an operation that the
//! caller then waits for at once (`rados_aio_*`): call them only on the
//! store's worker threads, never on a shard.

use std::ffi::{c_char, c_int, c_void};

pub(crate) type RadosT = *mut c_void;
pub(crate) type IoCtxT = *mut c_void;
pub(crate) type ListCtxT = *mut c_void;
pub(crate) type ReadOpT = *mut c_void;
pub(crate) type WriteOpT = *mut c_void;
pub(crate) type CompletionT = *mut c_void;
/// `rados_callback_t`; the store passes none.
pub(crate) type CallbackT = Option<unsafe extern "C" fn(CompletionT, *mut c_void)>;

/// `LIBRADOS_CREATE_IDEMPOTENT`: create the object if it does not exist.
pub(crate) const CREATE_IDEMPOTENT: c_int = 0;
/// `LIBRADOS_OPERATION_NOFLAG`.
pub(crate) const OPERATION_NOFLAG: c_int = 0;

#[link(name = "rados")]
extern "C" {
    pub(crate) fn rados_create(cluster: *mut RadosT, id: *const c_char) -> c_int;
    pub(crate) fn rados_conf_read_file(cluster: RadosT, path: *const c_char) -> c_int;
    pub(crate) fn rados_conf_set(
        cluster: RadosT,
        option: *const c_char,
        value: *const c_char,
    ) -> c_int;
    pub(crate) fn rados_conf_get(
        cluster: RadosT,
        option: *const c_char,
        buf: *mut c_char,
        len: usize,
    ) -> c_int;
    pub(crate) fn rados_connect(cluster: RadosT) -> c_int;
    pub(crate) fn rados_shutdown(cluster: RadosT);

    pub(crate) fn rados_ioctx_create(
        cluster: RadosT,
        pool_name: *const c_char,
        ioctx: *mut IoCtxT,
    ) -> c_int;
    pub(crate) fn rados_ioctx_destroy(io: IoCtxT);
    pub(crate) fn rados_ioctx_set_namespace(io: IoCtxT, nspace: *const c_char);

    pub(crate) fn rados_stat(
        io: IoCtxT,
        oid: *const c_char,
        psize: *mut u64,
        pmtime: *mut libc::time_t,
    ) -> c_int;
    pub(crate) fn rados_remove(io: IoCtxT, oid: *const c_char) -> c_int;

    pub(crate) fn rados_nobjects_list_open(io: IoCtxT, ctx: *mut ListCtxT) -> c_int;
    pub(crate) fn rados_nobjects_list_next2(
        ctx: ListCtxT,
        entry: *mut *const c_char,
        key: *mut *const c_char,
        nspace: *mut *const c_char,
        entry_size: *mut usize,
        key_size: *mut usize,
        nspace_size: *mut usize,
    ) -> c_int;
    pub(crate) fn rados_nobjects_list_close(ctx: ListCtxT);

    pub(crate) fn rados_create_write_op() -> WriteOpT;
    pub(crate) fn rados_release_write_op(write_op: WriteOpT);
    pub(crate) fn rados_write_op_create(
        write_op: WriteOpT,
        exclusive: c_int,
        category: *const c_char,
    );
    pub(crate) fn rados_write_op_write_full(write_op: WriteOpT, buffer: *const c_char, len: usize);
    pub(crate) fn rados_write_op_operate(
        write_op: WriteOpT,
        io: IoCtxT,
        oid: *const c_char,
        mtime: *mut libc::time_t,
        flags: c_int,
    ) -> c_int;

    pub(crate) fn rados_create_read_op() -> ReadOpT;
    pub(crate) fn rados_release_read_op(read_op: ReadOpT);
    pub(crate) fn rados_read_op_stat(
        read_op: ReadOpT,
        psize: *mut u64,
        pmtime: *mut libc::time_t,
        prval: *mut c_int,
    );
    pub(crate) fn rados_read_op_read(
        read_op: ReadOpT,
        offset: u64,
        len: usize,
        buffer: *mut c_char,
        bytes_read: *mut usize,
        prval: *mut c_int,
    );
    pub(crate) fn rados_read_op_assert_version(read_op: ReadOpT, ver: u64);
    pub(crate) fn rados_aio_read_op_operate(
        read_op: ReadOpT,
        io: IoCtxT,
        completion: CompletionT,
        oid: *const c_char,
        flags: c_int,
    ) -> c_int;

    pub(crate) fn rados_aio_create_completion2(
        cb_arg: *mut c_void,
        cb_complete: CallbackT,
        pc: *mut CompletionT,
    ) -> c_int;
    pub(crate) fn rados_aio_wait_for_complete(c: CompletionT) -> c_int;
    pub(crate) fn rados_aio_get_return_value(c: CompletionT) -> c_int;
    pub(crate) fn rados_aio_get_version(c: CompletionT) -> u64;
    pub(crate) fn rados_aio_release(c: CompletionT);

    pub(crate) fn rados_mon_command(
        cluster: RadosT,
        cmd: *mut *const c_char,
        cmdlen: usize,
        inbuf: *const c_char,
        inbuflen: usize,
        outbuf: *mut *mut c_char,
        outbuflen: *mut usize,
        outs: *mut *mut c_char,
        outslen: *mut usize,
    ) -> c_int;
    pub(crate) fn rados_buffer_free(buf: *mut c_char);
}
