"""Layer 1, the wire: the binary format every message that crosses the cut is serialized to.

Owns `Message`/`Field` (format.py), exact-width bit packing (bits.py) and lossless containers
(containers.py), plus the byte breakdown a meter reads back from the bytes themselves. Imports
only `adcbench.errors`, numpy and torch; every other layer may import it.
"""

from .bits import bits_for, pack_bits, packed_nbytes, unpack_bits, unpacked_dtype
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
from .gaps import gap_code_nbytes, gap_decode, gap_encode, golomb_parameter
from .limits import Limits, get_limits, set_limits

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
    "Limits",
    "Message",
    "bits_for",
    "breakdown",
    "compress_container",
    "decompress_container",
    "gap_code_nbytes",
    "gap_decode",
    "gap_encode",
    "get_limits",
    "golomb_parameter",
    "pack_bits",
    "packed_nbytes",
    "set_limits",
    "unpack_bits",
    "unpacked_dtype",
]
