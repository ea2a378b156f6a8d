"""Layer 1, the wire: the binary format every message that crosses the cut is serialized to.

Owns `Message`/`Field` (format.py), exact-width bit packing (bits.py) and lossless containers
(containers.py), plus the byte breakdown a meter reads back from the bytes themselves. Imports
only `adcbench.errors`, numpy and torch; every other layer may import it.
"""

from .bits import bits_for, pack_bits, packed_nbytes, unpack_bits
from .containers import (
    CONTAINER_HEADER,
    CONTAINER_MAGIC,
    MAX_INNER_BYTES,
    Codec,
    compress_container,
    decompress_container,
)
from .format import (
    BREAKDOWN_KEYS,
    MAGIC,
    MAX_FIELDS,
    MAX_NDIM,
    MAX_PACKED_BITS,
    VERSION,
    Category,
    Field,
    Kind,
    Message,
    breakdown,
)

__all__ = [
    "BREAKDOWN_KEYS",
    "CONTAINER_HEADER",
    "CONTAINER_MAGIC",
    "MAGIC",
    "MAX_FIELDS",
    "MAX_INNER_BYTES",
    "MAX_NDIM",
    "MAX_PACKED_BITS",
    "VERSION",
    "Category",
    "Codec",
    "Field",
    "Kind",
    "Message",
    "bits_for",
    "breakdown",
    "compress_container",
    "decompress_container",
    "pack_bits",
    "packed_nbytes",
    "unpack_bits",
]
