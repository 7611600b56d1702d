//! RDMA verbs over a reliable connection (feature `rdma`, libibverbs).
//!
//! Per shard, the first device's first active port is opened once (context
//! and protection domain). Per connection, a [`QueuePair`] holds an RC queue
//! pair, a send and a receive completion queue, and two registered buffers
//! of `RDMA_BUFFER_BYTES`: one the peer writes into, one we stage our
//! outgoing payload in. Its [`RdmaEndpoint`] (queue pair number, LID, GID,
//! MTU, receive buffer address and rkey) travels in Hello; each side then
//! moves its queue pair INIT -> RTR -> RTS towards the other's.
//!
//! Data path: the sender copies the page bytes into its send buffer, posts
//! an RDMA WRITE WITH IMMEDIATE (immediate = the request's correlation id)
//! into the peer's receive buffer and polls its send queue for the
//! acknowledgement; only then does it send the request frame over TCP with
//! the `RDMA_PAYLOAD` flag and the page indices but no page bytes. The
//! receiver, on that frame, polls its receive queue for the completion with
//! that immediate and takes the bytes from its buffer. One payload is in
//! flight per queue pair: the sender holds the queue pair's transfer slot
//! until the answer arrives, by which time the receiver has taken the bytes.
//!
//! Completions are polled on the shard: a poll that finds nothing yields to
//! the shard's other tasks and tries again, up to `RDMA_COMPLETION_MS_MAX`.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::ptr;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::sync::{Semaphore, StaticPermit};
use rdma_sys::*;

use crate::error::TransportError;
use crate::limits::{RDMA_BUFFER_BYTES, RDMA_COMPLETION_MS_MAX};
use crate::message::RdmaEndpoint;

/// Receive work requests kept posted: each RDMA WRITE WITH IMMEDIATE
/// consumes one.
const RECEIVES_POSTED: u32 = 16;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn failed(op: &'static str) -> TransportError {
    TransportError::Rdma { op, errno: errno() }
}

fn check(op: &'static str, status: i32) -> Result<(), TransportError> {
    if status == 0 {
        Ok(())
    } else {
        // Verbs calls return the errno itself, or -1 with errno set.
        let errno = if status > 0 { status } else { errno() };
        Err(TransportError::Rdma { op, errno })
    }
}

/// Names of the verbs devices on this machine. Empty when there are none,
/// or when the kernel has no RDMA support at all.
pub fn device_names() -> Vec<String> {
    let mut count = 0;
    // SAFETY: ibv_get_device_list writes the count and returns NULL or an
    // array of `count` device pointers, freed below.
    let list = unsafe { ibv_get_device_list(&mut count) };
    if list.is_null() {
        return Vec::new();
    }
    let mut names = Vec::new();
    for i in 0..usize::try_from(count).unwrap_or(0) {
        // SAFETY: i < count entries of a live list; names are C strings
        // owned by the device.
        let name = unsafe { CStr::from_ptr(ibv_get_device_name(*list.add(i))) };
        names.push(name.to_string_lossy().into_owned());
    }
    // SAFETY: the list came from ibv_get_device_list and is not used after.
    unsafe { ibv_free_device_list(list) };
    names
}

/// Whether this process has a verbs device; asked once.
fn have_device() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    *HAVE.get_or_init(|| {
        let names = device_names();
        if !names.is_empty() {
            tracing::info!(devices = ?names, "RDMA devices found");
        }
        !names.is_empty()
    })
}

/// A shard's open device: context, protection domain and the port used.
struct Device {
    context: *mut ibv_context,
    pd: *mut ibv_pd,
    port: u8,
    lid: u16,
    gid: [u8; 16],
    mtu: u8,
}

thread_local! {
    static SHARD_DEVICE: RefCell<Option<Rc<Device>>> = const { RefCell::new(None) };
}

impl Device {
    /// The shard's device, opened on first use.
    fn for_shard() -> Result<Option<Rc<Device>>, TransportError> {
        if !have_device() {
            return Ok(None);
        }
        if let Some(device) = SHARD_DEVICE.with(|d| d.borrow().clone()) {
            return Ok(Some(device));
        }
        let device = Rc::new(Device::open_first()?);
        SHARD_DEVICE.with(|d| *d.borrow_mut() = Some(device.clone()));
        Ok(Some(device))
    }

    fn open_first() -> Result<Device, TransportError> {
        let mut count = 0;
        // SAFETY: as in device_names.
        let list = unsafe { ibv_get_device_list(&mut count) };
        if list.is_null() || count < 1 {
            return Err(failed("ibv_get_device_list"));
        }
        // SAFETY: the list holds at least one device; it may be freed once
        // the device is open (the context keeps what it needs).
        let context = unsafe { ibv_open_device(*list) };
        // SAFETY: freed once, not used after.
        unsafe { ibv_free_device_list(list) };
        if context.is_null() {
            return Err(failed("ibv_open_device"));
        }
        let port = 1u8;
        // SAFETY: a zeroed port attribute struct is valid input; the
        // context is open.
        let mut attr: ibv_port_attr = unsafe { std::mem::zeroed() };
        // SAFETY: the context is open and `attr` is a valid, writable port
        // attribute struct that outlives the call.
        let status = unsafe { ___ibv_query_port(context, port, &mut attr) };
        let mut gid = ibv_gid { raw: [0; 16] };
        // SAFETY: gid index 0 of an open context's port.
        let gid_status = unsafe { ibv_query_gid(context, port, 0, &mut gid) };
        // SAFETY: the context is open.
        let pd = unsafe { ibv_alloc_pd(context) };
        if status != 0 || gid_status != 0 || pd.is_null() {
            let error = failed("querying the port or allocating a protection domain");
            // SAFETY: release what was acquired, in reverse order.
            unsafe {
                if !pd.is_null() {
                    ibv_dealloc_pd(pd);
                }
                ibv_close_device(context);
            }
            return Err(error);
        }
        // SAFETY: `raw` is the whole union.
        let gid = unsafe { gid.raw };
        Ok(Device {
            context,
            pd,
            port,
            lid: attr.lid,
            gid,
            mtu: attr.active_mtu as u8,
        })
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: every queue pair and region holds an Rc to this device,
        // so none is left when it drops.
        unsafe {
            ibv_dealloc_pd(self.pd);
            ibv_close_device(self.context);
        }
    }
}

/// A buffer registered with the device.
struct Region {
    mr: *mut ibv_mr,
    buffer: Vec<u64>,
}

impl Region {
    fn register(
        device: &Device,
        len_bytes: usize,
        access: ibv_access_flags,
    ) -> Result<Region, TransportError> {
        let mut buffer = vec![0u64; len_bytes.div_ceil(8)];
        // SAFETY: the buffer outlives the registration (deregistered in
        // Drop before the Vec is freed) and is never reallocated.
        let mr = unsafe {
            ibv_reg_mr(
                device.pd,
                buffer.as_mut_ptr().cast(),
                len_bytes,
                access.0 as i32,
            )
        };
        if mr.is_null() {
            return Err(failed("ibv_reg_mr"));
        }
        Ok(Region { mr, buffer })
    }

    fn addr(&self) -> u64 {
        self.buffer.as_ptr() as u64
    }

    fn len(&self) -> usize {
        self.buffer.len() * 8
    }

    fn lkey(&self) -> u32 {
        // SAFETY: mr is a live registration.
        unsafe { (*self.mr).lkey }
    }

    fn rkey(&self) -> u32 {
        // SAFETY: mr is a live registration.
        unsafe { (*self.mr).rkey }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: u64 storage viewed as bytes; every pattern is valid.
        unsafe { std::slice::from_raw_parts_mut(self.buffer.as_mut_ptr().cast::<u8>(), len) }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: as in bytes_mut, read-only.
        unsafe { std::slice::from_raw_parts(self.buffer.as_ptr().cast::<u8>(), self.len()) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: deregistered once, before the buffer is freed.
        unsafe { ibv_dereg_mr(self.mr) };
    }
}

/// One reliable-connection queue pair with its buffers.
pub struct QueuePair {
    // Field order is drop order: the queue pair goes before its completion
    // queues and regions, and all of them before the device.
    qp: *mut ibv_qp,
    send_cq: *mut ibv_cq,
    recv_cq: *mut ibv_cq,
    send: RefCell<Region>,
    recv: RefCell<Region>,
    packet_sequence: u32,
    peer: Cell<Option<RdmaEndpoint>>,
    transfer: Rc<Semaphore>,
    device: Rc<Device>,
}

impl QueuePair {
    /// A queue pair on this shard's device, or `None` without a device.
    pub fn create() -> Result<Option<QueuePair>, TransportError> {
        let Some(device) = Device::for_shard()? else {
            return Ok(None);
        };
        // SAFETY: the context is open; no completion channel (we poll).
        let send_cq =
            unsafe { ibv_create_cq(device.context, 16, ptr::null_mut(), ptr::null_mut(), 0) };
        if send_cq.is_null() {
            return Err(failed("ibv_create_cq"));
        }
        // SAFETY: as above.
        let recv_cq = unsafe {
            ibv_create_cq(
                device.context,
                RECEIVES_POSTED as i32 * 2,
                ptr::null_mut(),
                ptr::null_mut(),
                0,
            )
        };
        if recv_cq.is_null() {
            let error = failed("ibv_create_cq");
            // SAFETY: created above, unused.
            unsafe { ibv_destroy_cq(send_cq) };
            return Err(error);
        }
        let mut init = ibv_qp_init_attr {
            qp_context: ptr::null_mut(),
            send_cq,
            recv_cq,
            srq: ptr::null_mut(),
            cap: ibv_qp_cap {
                max_send_wr: 16,
                max_recv_wr: RECEIVES_POSTED * 2,
                max_send_sge: 1,
                max_recv_sge: 1,
                max_inline_data: 0,
            },
            qp_type: ibv_qp_type::IBV_QPT_RC,
            sq_sig_all: 0,
        };
        // SAFETY: pd and both CQs are live.
        let qp = unsafe { ibv_create_qp(device.pd, &mut init) };
        if qp.is_null() {
            let error = failed("ibv_create_qp");
            // SAFETY: created above, unused.
            unsafe {
                ibv_destroy_cq(recv_cq);
                ibv_destroy_cq(send_cq);
            }
            return Err(error);
        }
        // From here Drop releases the verbs objects.
        let regions = Region::register(
            &device,
            RDMA_BUFFER_BYTES,
            ibv_access_flags::IBV_ACCESS_LOCAL_WRITE,
        )
        .and_then(|send| {
            let access = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE
                | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE;
            Ok((send, Region::register(&device, RDMA_BUFFER_BYTES, access)?))
        });
        let (send, recv) = match regions {
            Ok(regions) => regions,
            Err(error) => {
                // SAFETY: created above, unused.
                unsafe {
                    ibv_destroy_qp(qp);
                    ibv_destroy_cq(recv_cq);
                    ibv_destroy_cq(send_cq);
                }
                return Err(error);
            }
        };
        // Any 24-bit value; varied so a stale packet of an old queue pair
        // with the same number is not taken for a new one's.
        let packet_sequence =
            (Instant::now().elapsed().subsec_nanos() ^ (qp as usize as u32)) & 0x00ff_ffff;
        Ok(Some(QueuePair {
            qp,
            send_cq,
            recv_cq,
            send: RefCell::new(send),
            recv: RefCell::new(recv),
            packet_sequence,
            peer: Cell::new(None),
            transfer: Rc::new(Semaphore::new(1)),
            device,
        }))
    }

    /// What the peer needs, for our Hello.
    pub fn endpoint(&self) -> RdmaEndpoint {
        let recv = self.recv.borrow();
        RdmaEndpoint {
            // SAFETY: qp is live.
            qp_number: unsafe { (*self.qp).qp_num },
            packet_sequence: self.packet_sequence,
            lid: self.device.lid,
            gid: self.device.gid,
            mtu: self.device.mtu,
            recv_address: recv.addr(),
            recv_key: recv.rkey(),
            recv_bytes: recv.len() as u64,
        }
    }

    /// Largest payload one transfer carries.
    pub fn capacity_bytes(&self) -> usize {
        let peer = self
            .peer
            .get()
            .map_or(0, |p| usize::try_from(p.recv_bytes).unwrap_or(usize::MAX));
        self.send.borrow().len().min(peer)
    }

    /// Connects to the peer's queue pair: INIT, RTR (ready to receive, with
    /// receives posted), RTS (ready to send).
    pub fn connect(&mut self, peer: &RdmaEndpoint) -> Result<(), TransportError> {
        let access =
            ibv_access_flags::IBV_ACCESS_LOCAL_WRITE | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE;
        // SAFETY: a zeroed attribute struct is valid; only masked fields are read.
        let mut attr: ibv_qp_attr = unsafe { std::mem::zeroed() };
        attr.qp_state = ibv_qp_state::IBV_QPS_INIT;
        attr.pkey_index = 0;
        attr.port_num = self.device.port;
        attr.qp_access_flags = access.0;
        let mask = ibv_qp_attr_mask::IBV_QP_STATE
            | ibv_qp_attr_mask::IBV_QP_PKEY_INDEX
            | ibv_qp_attr_mask::IBV_QP_PORT
            | ibv_qp_attr_mask::IBV_QP_ACCESS_FLAGS;
        // SAFETY: qp is live; attr is initialised for the masked fields.
        check("ibv_modify_qp(INIT)", unsafe {
            ibv_modify_qp(self.qp, &mut attr, mask.0 as i32)
        })?;

        for _ in 0..RECEIVES_POSTED {
            self.post_receive()?;
        }

        // SAFETY: as above.
        let mut attr: ibv_qp_attr = unsafe { std::mem::zeroed() };
        attr.qp_state = ibv_qp_state::IBV_QPS_RTR;
        attr.path_mtu = u32::from(self.device.mtu.min(peer.mtu).max(1));
        attr.dest_qp_num = peer.qp_number;
        attr.rq_psn = peer.packet_sequence;
        attr.max_dest_rd_atomic = 1;
        attr.min_rnr_timer = 12;
        attr.ah_attr.dlid = peer.lid;
        attr.ah_attr.port_num = self.device.port;
        if peer.gid != [0; 16] {
            // RoCE (and routed InfiniBand) address by GID.
            attr.ah_attr.is_global = 1;
            attr.ah_attr.grh.dgid = ibv_gid { raw: peer.gid };
            attr.ah_attr.grh.sgid_index = 0;
            attr.ah_attr.grh.hop_limit = 1;
        }
        let mask = ibv_qp_attr_mask::IBV_QP_STATE
            | ibv_qp_attr_mask::IBV_QP_AV
            | ibv_qp_attr_mask::IBV_QP_PATH_MTU
            | ibv_qp_attr_mask::IBV_QP_DEST_QPN
            | ibv_qp_attr_mask::IBV_QP_RQ_PSN
            | ibv_qp_attr_mask::IBV_QP_MAX_DEST_RD_ATOMIC
            | ibv_qp_attr_mask::IBV_QP_MIN_RNR_TIMER;
        // SAFETY: as above.
        check("ibv_modify_qp(RTR)", unsafe {
            ibv_modify_qp(self.qp, &mut attr, mask.0 as i32)
        })?;

        // SAFETY: as above.
        let mut attr: ibv_qp_attr = unsafe { std::mem::zeroed() };
        attr.qp_state = ibv_qp_state::IBV_QPS_RTS;
        attr.timeout = 14; // 4.096 us * 2^14 = 67 ms per retry
        attr.retry_cnt = 7;
        attr.rnr_retry = 7;
        attr.sq_psn = self.packet_sequence;
        attr.max_rd_atomic = 1;
        let mask = ibv_qp_attr_mask::IBV_QP_STATE
            | ibv_qp_attr_mask::IBV_QP_TIMEOUT
            | ibv_qp_attr_mask::IBV_QP_RETRY_CNT
            | ibv_qp_attr_mask::IBV_QP_RNR_RETRY
            | ibv_qp_attr_mask::IBV_QP_SQ_PSN
            | ibv_qp_attr_mask::IBV_QP_MAX_QP_RD_ATOMIC;
        // SAFETY: as above.
        check("ibv_modify_qp(RTS)", unsafe {
            ibv_modify_qp(self.qp, &mut attr, mask.0 as i32)
        })?;
        self.peer.set(Some(*peer));
        Ok(())
    }

    /// A receive for one incoming WRITE WITH IMMEDIATE (no scatter list:
    /// the bytes land where the writer aimed them).
    fn post_receive(&self) -> Result<(), TransportError> {
        let mut wr = ibv_recv_wr {
            wr_id: 0,
            next: ptr::null_mut(),
            sg_list: ptr::null_mut(),
            num_sge: 0,
        };
        let mut bad = ptr::null_mut();
        // SAFETY: qp is live; wr lives across the call, which copies it.
        check("ibv_post_recv", unsafe {
            ibv_post_recv(self.qp, &mut wr, &mut bad)
        })
    }

    /// The right to one transfer; held until the answer to the request it
    /// carried arrives, so the peer's buffer is free again.
    pub async fn transfer_slot(&self) -> Result<StaticPermit, TransportError> {
        self.transfer
            .acquire_static_permit(1)
            .await
            .map_err(|_| TransportError::PeerClosed)
    }

    /// Writes `data` into the peer's receive buffer with `immediate`, and
    /// waits for the acknowledgement.
    pub async fn write_with_immediate(
        &self,
        data: &[u8],
        immediate: u32,
    ) -> Result<(), TransportError> {
        let Some(peer) = self.peer.get() else {
            return Err(TransportError::Rdma {
                op: "write before connect",
                errno: 0,
            });
        };
        if data.len() > self.capacity_bytes() {
            return Err(TransportError::FrameTooLarge {
                len_bytes: data.len() as u64,
                max_bytes: self.capacity_bytes() as u64,
            });
        }
        let (addr, lkey) = {
            let mut send = self.send.borrow_mut();
            send.bytes_mut()[..data.len()].copy_from_slice(data);
            (send.addr(), send.lkey())
        };
        let mut sge = ibv_sge {
            addr,
            length: u32::try_from(data.len()).map_err(|_| TransportError::FrameTooLarge {
                len_bytes: data.len() as u64,
                max_bytes: u64::from(u32::MAX),
            })?,
            lkey,
        };
        // SAFETY: a zeroed work request is valid; the fields used are set.
        let mut wr: ibv_send_wr = unsafe { std::mem::zeroed() };
        wr.wr_id = u64::from(immediate);
        wr.sg_list = &mut sge;
        wr.num_sge = 1;
        wr.opcode = ibv_wr_opcode::IBV_WR_RDMA_WRITE_WITH_IMM;
        wr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
        wr.imm_data_invalidated_rkey_union.imm_data = immediate.to_be();
        wr.wr.rdma = rdma_t {
            remote_addr: peer.recv_address,
            rkey: peer.recv_key,
        };
        let mut bad = ptr::null_mut();
        // SAFETY: qp is live and connected; wr and sge live across the call,
        // and the send region stays untouched until the completion below.
        check("ibv_post_send", unsafe {
            ibv_post_send(self.qp, &mut wr, &mut bad)
        })?;
        let completion = poll_completion(self.send_cq).await?;
        if completion.status != ibv_wc_status::IBV_WC_SUCCESS {
            return Err(TransportError::Rdma {
                op: "RDMA WRITE WITH IMMEDIATE completion",
                errno: completion.status as i32,
            });
        }
        Ok(())
    }

    /// The payload the peer wrote for `correlation_id`: waits for its
    /// immediate, copies the bytes out and re-posts the receive.
    pub async fn receive(&self, correlation_id: u64) -> Result<Bytes, TransportError> {
        let completion = poll_completion(self.recv_cq).await?;
        self.post_receive()?;
        if completion.status != ibv_wc_status::IBV_WC_SUCCESS
            || completion.opcode != ibv_wc_opcode::IBV_WC_RECV_RDMA_WITH_IMM
        {
            return Err(TransportError::Rdma {
                op: "receive completion",
                errno: completion.status as i32,
            });
        }
        // SAFETY: a RECV_RDMA_WITH_IMM completion carries imm_data.
        let immediate =
            u32::from_be(unsafe { completion.imm_data_invalidated_rkey_union.imm_data });
        if immediate != correlation_id as u32 {
            return Err(TransportError::bad_frame(format!(
                "RDMA immediate {immediate} does not match request {correlation_id}"
            )));
        }
        let len = completion.byte_len as usize;
        let recv = self.recv.borrow();
        let Some(bytes) = recv.bytes().get(..len) else {
            return Err(TransportError::FrameTooLarge {
                len_bytes: len as u64,
                max_bytes: recv.len() as u64,
            });
        };
        // A copy: the buffer is reused by the next transfer.
        Ok(Bytes::copy_from_slice(bytes))
    }
}

/// Polls `cq` for one completion on the shard, yielding between polls.
async fn poll_completion(cq: *mut ibv_cq) -> Result<ibv_wc, TransportError> {
    let deadline = Instant::now() + Duration::from_millis(RDMA_COMPLETION_MS_MAX);
    loop {
        // SAFETY: a zeroed completion is valid output space.
        let mut completion: ibv_wc = unsafe { std::mem::zeroed() };
        // SAFETY: cq is live while its queue pair is (the caller holds it).
        let found = unsafe { ibv_poll_cq(cq, 1, &mut completion) };
        if found < 0 {
            return Err(TransportError::Rdma {
                op: "ibv_poll_cq",
                errno: -found,
            });
        }
        if found == 1 {
            return Ok(completion);
        }
        if Instant::now() > deadline {
            return Err(TransportError::Timeout {
                ms: RDMA_COMPLETION_MS_MAX,
            });
        }
        futures_lite::future::yield_now().await;
    }
}

impl Drop for QueuePair {
    fn drop(&mut self) {
        // SAFETY: destroyed once, queue pair before its completion queues;
        // the regions and the device drop after this body.
        unsafe {
            ibv_destroy_qp(self.qp);
            ibv_destroy_cq(self.recv_cq);
            ibv_destroy_cq(self.send_cq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without a device (CI's), discovery finds none and no
    /// queue pair is made; on one with a device, a queue pair describes a
    /// registered buffer of the configured size.
    #[test]
    fn discovery_matches_the_machine() -> Result<(), TransportError> {
        let names = device_names();
        match QueuePair::create()? {
            None => assert!(names.is_empty(), "devices {names:?} but no queue pair"),
            Some(queue_pair) => {
                let endpoint = queue_pair.endpoint();
                assert_eq!(endpoint.recv_bytes, RDMA_BUFFER_BYTES as u64);
                assert_ne!(endpoint.qp_number, 0);
            }
        }
        Ok(())
    }
}
