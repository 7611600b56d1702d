# ferry's node-to-node messages.
#
# Every message travels as one frame: a fixed 24-byte header (see
# transport/src/frame.rs) that names the message kind, followed by one Cap'n
# Proto message in the standard flat encoding (segment table, then segments)
# whose root is the struct for that kind. The header's kind is the only
# discriminant: there is no envelope union, so a frame's payload decodes with
# any Cap'n Proto implementation given this file and the kind.
#
# Compatibility: add fields only at the end of a struct with the next ordinal;
# never renumber or retype one. A change that old nodes cannot read raises
# `protocolVersion` (carried in Hello), and nodes refuse a peer whose version
# differs.

@0xb5ac3679f4c6e034;

# 2: ModuleUpload, ModuleStored, ObjectList, ObjectListing, ObjectDelete,
# ObjectDeleted (frame kinds 12 to 17), which version 1 nodes cannot read.
# 3: `store` in ObjectRead, ObjectWrite, ObjectList and ObjectDelete. A
# version 2 node would read a state request as one for objects, so the
# version rises and such a peer is refused.
# 4: StateUpdate and FetchPages (frame kinds 18, 19), which version 3
# nodes cannot read; Pages.more and Done.pagesToFollow, without which a
# snapshot or a funclet's changes larger than one frame cannot travel.
const protocolVersion :UInt32 = 4;

# Bits of Hello.capabilities.
const capabilityRdma :UInt64 = 1;     # this node has an RDMA device and offers a queue pair
const capabilityOffload :UInt64 = 2;  # accepts Offer (runs funclets next to its objects)
const capabilityObjects :UInt64 = 4;  # serves ObjectRead / Write / List / Delete

# Size of one page in Pages.data: the offload unit, not wasm's 64 KiB page.
const pageBytes :UInt32 = 4096;

# First message on every connection, both ways: the connecting node sends its
# Hello as a request and the accepting node answers with its own.
struct Hello {
  version @0 :UInt32;          # protocolVersion of the sender
  nodeName @1 :Text;
  capabilities @2 :UInt64;     # capability* bits
  rdma :union {
    none @3 :Void;
    endpoint @4 :RdmaEndpoint; # present only with capabilityRdma
  }
  # Proof of the cluster secret (HMAC-SHA256; transport/src/auth.rs), when
  # the sender has one. A connecting node sends `nonce` (32 random bytes);
  # the accepting node answers with its own nonce and its proof over both;
  # the connecting node then sends a second Hello with its proof, which the
  # accepting node answers with a third Hello (carrying its RDMA endpoint)
  # before it serves anything. Empty when absent. The secret never travels.
  nonce @5 :Data;
  proof @6 :Data;
}

# What the other side needs to connect a reliable-connection queue pair to
# ours and to RDMA WRITE into our receive buffer.
struct RdmaEndpoint {
  qpNumber @0 :UInt32;
  packetSequence @1 :UInt32;   # first packet sequence number our send queue uses
  lid @2 :UInt16;              # InfiniBand local id; 0 on RoCE
  gid @3 :Data;                # 16 bytes; routes RoCE traffic
  mtu @4 :UInt8;               # ibv_mtu enum value of our port
  recvAddress @5 :UInt64;      # virtual address of our registered receive buffer
  recvKey @6 :UInt32;          # its rkey
  recvBytes @7 :UInt64;        # its length
}

# A mutable wasm global by its index in the module, value as raw bits
# (i32/f32 zero-extended).
struct Global {
  index @0 :UInt32;
  bits @1 :UInt64;
}

# A set of 4 KiB pages of linear memory: `indices[i]` is the page number of
# bytes `data[i * pageBytes .. (i + 1) * pageBytes]`. One contiguous blob rather
# than one Data per page, so a receiver reads every page without copying and a
# sender writes them with one copy.
struct PageSet {
  indices @0 :List(UInt32);    # strictly ascending
  data @1 :Data;               # indices.length * pageBytes bytes
}

# Compute node -> storage node: may I run this funclet next to `key`?
struct Offer {
  callId @0 :UInt64;
  user @1 :Text;
  function @2 :Text;
  moduleHash @3 :Data;         # identifies the uploaded module (its zygote image)
  key @4 :Data;                # the object the funclet works on
  funcletIndex @5 :UInt32;     # element of the module's function table
  args @6 :List(Int32);
  memoryPages @7 :UInt32;      # linear memory size in 64 KiB wasm pages
  globals @8 :List(Global);
  inlinePages :union {         # small snapshots ride here: one round trip
    none @9 :Void;
    pages @10 :PageSet;
  }
  waitMs @11 :UInt32;          # how long the offering node waits for Done from
                               # sending this Offer, ms; past it the storage node
                               # stops the funclet (0: not said)
}

struct Accept {
  callId @0 :UInt64;
  slot @1 :UInt32;             # the storage node's offload slot for this call
}

struct Decline {
  callId @0 :UInt64;
  reason @1 :Text;
}

# The snapshot's dirty pages, sent after Accept when they did not ride in the
# Offer.
struct Pages {
  callId @0 :UInt64;
  pages @1 :PageSet;
  more @2 :Bool;               # version 4: more Pages of this call follow
                               # (each answered with Accept); false on the last
}

# Storage node -> compute node: the funclet returned.
struct Done {
  callId @0 :UInt64;
  returnValue @1 :Int32;
  globals @2 :List(Global);
  memoryPages @3 :UInt32;      # memory size after the call, in 64 KiB wasm pages
  dirtyPages @4 :PageSet;      # pages written since the snapshot was applied
  pagesToFollow @5 :UInt32;    # version 4: more of them, fetched with
                               # FetchPages, each answered with Pages
}

struct ObjectRead {
  user @0 :Text;
  key @1 :Data;
  offset @2 :UInt64;
  lenMax @3 :UInt64;
  store @4 :Store;             # version 3; absent (objects) before
}

# Which of a storage node's two stores an object request addresses.
enum Store {
  objects @0;                  # the objects of /o/ and the NDP imports
  state @1;                    # Faasm's state values (/s/, __faasm_*_state)
}

struct ObjectData {
  found @0 :Bool;
  objectBytes @1 :UInt64;      # the object's whole size
  offset @2 :UInt64;           # where `data` starts in the object
  data @3 :Data;
}

# Creates or replaces the whole object: in one message when `offset` is 0
# and `data` is all `totalBytes` of it; otherwise as a stream of chunks in
# order on one connection, named by the sender's `writeId`, each answered
# with ObjectWritten (bytes so far). The object appears, whole, when the
# last chunk lands; a stream left unfinished leaves the old object.
struct ObjectWrite {
  user @0 :Text;
  key @1 :Data;
  data @2 :Data;
  offset @3 :UInt64;           # where `data` goes in the object
  totalBytes @4 :UInt64;       # the whole object's size
  writeId @5 :UInt64;          # names the stream (0 for a one-message write)
  store @6 :Store;             # version 3; absent (objects) before
}

struct ObjectWritten {
  objectBytes @0 :UInt64;
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;
}

enum ErrorCode {
  internal @0;
  badRequest @1;               # the request broke the protocol or a limit
  notFound @2;                 # unknown module, function or slot
  trap @3;                     # the funclet trapped; `message` says how
  versionMismatch @4;
  unavailable @5;              # the node is shutting down or not ready
  unauthenticated @6;          # the peer did not prove the cluster secret
}

# Added in protocol version 2 (frame kinds 12 to 17, in this order).

# A function's uploaded module, sent to a node that should hold it: upload
# propagation, or a node that lacks the module an Offer names.
struct ModuleUpload {
  user @0 :Text;
  function @1 :Text;
  hash @2 :Data;               # 32 bytes: identifies the module, as Offer.moduleHash
  wasm @3 :Data;               # the module's bytes
}

# Answer to ModuleUpload: the receiver holds the module.
struct ModuleStored {
  hash @0 :Data;               # 32 bytes
}

# Asks for the keys and sizes of a user's objects.
struct ObjectList {
  user @0 :Text;
  store @1 :Store;             # version 3; absent (objects) before
}

struct ObjectListing {
  entries @0 :List(ObjectEntry);
}

struct ObjectEntry {
  key @0 :Data;
  sizeBytes @1 :UInt64;        # the object's whole size
}

# Removes the whole object.
struct ObjectDelete {
  user @0 :Text;
  key @1 :Data;
  store @2 :Store;             # version 3; absent (objects) before
}

struct ObjectDeleted {
  found @0 :Bool;              # whether there was an object to remove
}

# Added in protocol version 4 (frame kind 18).

# Changes one of a storage node's state values in place, applied there
# under that node's lock for the value, so updates sent by several nodes at
# once never lose each other's bytes. Answered with ObjectWritten (the
# value's size after the update) or Error.
struct StateUpdate {
  user @0 :Text;
  key @1 :Data;
  append @2 :Bool;             # true: `data` goes at the value's end; no ranges
  valueBytes @3 :UInt64;       # ranges: the value is at least this long after
  offsets @4 :List(UInt64);    # ranges: where each range goes in the value
  lens @5 :List(UInt64);       # ranges: each range's length, its bytes in `data`
  data @6 :Data;               # the ranges' bytes one after another, or the appended bytes
}

# Added in protocol version 4 (frame kind 19).

# Compute node -> storage node: the next part of a Done's changed pages
# (Done.pagesToFollow said how many); answered with Pages, `more` set on
# all but the last.
struct FetchPages {
  callId @0 :UInt64;
}
