"""Decodes one captured ferry frame holding an Offer with pycapnp, an
implementation of Cap'n Proto that shares no code with ours, against the
schema file itself. Prints the fields as `name=value` lines for the Rust test
to compare.

usage: decode_offer.py SCHEMA.capnp FRAME.bin
"""

import struct
import sys

try:
    import capnp
except ImportError:
    sys.stderr.write("pycapnp is not installed; install it with: pip install pycapnp\n")
    sys.exit(3)

HEADER = struct.Struct("<4sBBHQII")  # magic, version, kind, flags, correlation id, length, reserved
KIND_OFFER = 2


def main(schema_path, frame_path):
    schema = capnp.load(schema_path)
    frame = open(frame_path, "rb").read()
    magic, version, kind, flags, correlation_id, length, reserved = HEADER.unpack_from(frame)
    if magic != b"FRRY" or version != 1 or reserved != 0:
        sys.exit(f"not a ferry frame: magic {magic!r} version {version} reserved {reserved}")
    if kind != KIND_OFFER:
        sys.exit(f"frame kind {kind}, expected Offer ({KIND_OFFER})")
    payload = frame[HEADER.size:]
    if len(payload) != length:
        sys.exit(f"payload is {len(payload)} bytes, header says {length}")
    with schema.Offer.from_bytes(payload) as offer:
        print(f"correlationId={correlation_id}")
        print(f"flags={flags}")
        print(f"callId={offer.callId}")
        print(f"user={offer.user}")
        print(f"function={offer.function}")
        print(f"moduleHash={bytes(offer.moduleHash).hex()}")
        print(f"key={bytes(offer.key).hex()}")
        print(f"funcletIndex={offer.funcletIndex}")
        print(f"args={','.join(str(a) for a in offer.args)}")
        print(f"memoryPages={offer.memoryPages}")
        print(f"globals={','.join(f'{g.index}:{g.bits}' for g in offer.globals)}")
        which = offer.inlinePages.which()
        print(f"inlinePages={which}")
        if which == "pages":
            pages = offer.inlinePages.pages
            data = bytes(pages.data)
            page_bytes = schema.pageBytes
            print(f"pageIndices={','.join(str(i) for i in pages.indices)}")
            print(f"pageDataBytes={len(data)}")
            print(f"pageFirstBytes={','.join(str(data[i]) for i in range(0, len(data), page_bytes))}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
