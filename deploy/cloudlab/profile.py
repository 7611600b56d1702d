"""ferry: a serverless WebAssembly runtime that runs the I/O-heavy part of a
function on the storage node that holds its data. Storage nodes (ferry, and
Ceph OSDs with the Ceph backend), compute nodes and load generators on one
experiment LAN, RDMA where the hardware has it.

Instructions:
Every node builds ferry's image from this repository (a release build:
minutes; `tail -f /var/log/ferry-startup.log` on a node), writes the cluster config
from the experiment's addresses to /etc/ferry/cluster.toml and starts its
role. Then, on `loadgen-0`:

    sudo bash /local/repository/deploy/cloudlab/startup.sh status
    sudo bash /local/repository/deploy/cloudlab/startup.sh report

The report (NDP against forbid_ndp, with HdrHistogram logs) lands in
/mnt/ferry/results. deploy/README.md in the repository has the whole
runbook.
"""

# A repository-based profile: CloudLab clones the repository to
# /local/repository on every node, and each node runs
# deploy/cloudlab/startup.sh with its role at boot. Nothing here knows an
# address: CloudLab assigns the LAN's, and each node reads them from its
# manifest (`geni-get manifest`, deploy/cloudlab/manifest.py).

import geni.portal as portal
import geni.rspec.emulab  # noqa: F401 (adds setNoBandwidthShaping to links)
import geni.rspec.igext  # noqa: F401 (adds Blockstore to nodes)
import geni.rspec.pg as pg

STARTUP = "/local/repository/deploy/cloudlab/startup.sh"
LAN = "lan"
MOUNT = "/mnt/ferry"

pc = portal.Context()
pc.defineParameter(
    "storage_nodes", "Storage nodes", portal.ParameterType.INTEGER, 3,
    longDescription="Machines that hold the objects and run offloaded funclets "
    "(and a Ceph OSD each with the Ceph backend).")
pc.defineParameter(
    "compute_nodes", "Compute nodes", portal.ParameterType.INTEGER, 3,
    longDescription="Machines that accept invocations and offload funclets.")
pc.defineParameter(
    "loadgen_nodes", "Load generators", portal.ParameterType.INTEGER, 1,
    longDescription="Machines that run ferry-bench; not cluster members.")
pc.defineParameter(
    "hardware_type", "Hardware type", portal.ParameterType.NODETYPE, "c6525-25g",
    longDescription="CloudLab node type of every machine (empty: any). "
    "c6525-25g and c6525-100g (Utah) have Mellanox ConnectX-5 NICs with RoCE.")
pc.defineParameter(
    "link_gbps", "Experiment LAN speed (Gb/s)", portal.ParameterType.INTEGER, 10,
    longDescription="The least speed each machine's LAN interface must have; "
    "never shaped down. 0: whatever the nodes have.")
pc.defineParameter(
    "disk_gb", "Local disk per node (GB)", portal.ParameterType.INTEGER, 100,
    longDescription="A local blockstore mounted at " + MOUNT + " on every node: "
    "Docker's images and build cache, ferry's data, Ceph's BlueStore file.")
pc.defineParameter(
    "backend", "Object store", portal.ParameterType.STRING, "embedded",
    [("embedded", "embedded (files on the storage nodes)"),
     ("ceph", "Ceph RADOS (one monitor, one OSD per storage node)")])
pc.defineParameter(
    "rdma", "Use RDMA where the NICs have it", portal.ParameterType.BOOLEAN, True,
    longDescription="Pass the RDMA devices into the ferry containers; the "
    "transport then moves offload pages by RDMA WRITE, and says in its log "
    "when it falls back to TCP.")
pc.defineParameter(
    "os_image", "Disk image", portal.ParameterType.IMAGE,
    "urn:publicid:IDN+emulab.net+image+emulab-ops//UBUNTU24-64-STD",
    longDescription="Any image with apt, Docker from its archive and "
    "geni-get; ferry itself runs in a Debian 12 container.",
    advanced=True)
params = pc.bindParameters()

for name, low, high in (("storage_nodes", 1, 16), ("compute_nodes", 1, 16),
                        ("loadgen_nodes", 0, 4)):
    value = getattr(params, name)
    if not low <= value <= high:
        pc.reportError(portal.ParameterError(
            "between %d and %d, not %d" % (low, high, value), [name]))
if params.link_gbps < 0 or params.link_gbps > 400:
    pc.reportError(portal.ParameterError("0 to 400 Gb/s", ["link_gbps"]))
if params.disk_gb < 20:
    pc.reportError(portal.ParameterError(
        "at least 20 GB: the image build alone needs ~8 GB", ["disk_gb"]))
if params.backend not in ("embedded", "ceph"):
    pc.reportError(portal.ParameterError("embedded or ceph", ["backend"]))
pc.verifyParameters()

request = pc.makeRequestRSpec()
lan = request.LAN(LAN)
if params.link_gbps > 0:
    lan.bandwidth = params.link_gbps * 1000 * 1000  # kbit/s
    # The speed is a floor for choosing machines, not a shaping target:
    # no delay nodes between ferry nodes.
    lan.setNoBandwidthShaping()

roles = (("storage", params.storage_nodes), ("compute", params.compute_nodes),
         ("loadgen", params.loadgen_nodes))
for role, count in roles:
    for i in range(count):
        node = request.RawPC("%s-%d" % (role, i))
        node.disk_image = params.os_image
        if params.hardware_type:
            node.hardware_type = params.hardware_type
        disk = node.Blockstore("%s-%d-disk" % (role, i), MOUNT)
        disk.size = "%dGB" % params.disk_gb
        lan.addInterface(node.addInterface("if0"))
        node.addService(pg.Execute(
            shell="bash",
            command="sudo bash %s boot %s --backend %s --rdma %s --lan %s --disk %s"
            % (STARTUP, role, params.backend, "yes" if params.rdma else "no",
               LAN, MOUNT)))

pc.printRequestRSpec(request)
