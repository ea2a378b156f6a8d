"""`zstd` and `zlib`: lossless entropy coding of a whole encoded message, both directions.

Any method can end with one (`topk:ratio=0.1+zstd`, `adc+quant:bits=8+zlib:level=9`) to show how
far general-purpose entropy coding takes its payload. The pipeline applies them to the bytes of
the encoded message (`Pipeline.pack` / `unpack`), so they compose with every lossy method.

Wire: a container `ADCZ | u8 algorithm | u32 inner length | compressed bytes` (9-byte header,
adcbench/wire.py, docs/wire-format.md). When compression would not shrink the message, it is
stored as is (algorithm 0), so a container is never more than 9 bytes larger than its message.
`wire.breakdown` opens the container: payload/side/labels/framing describe the message inside,
and `lossless` = container size - message size (negative when compression helps).

Analytic size: entropy coding cannot be predicted from shapes, so the analytic size of a chain
with a lossless stage is the analytic size of the chain without it; the contract is
wire <= inner wire + 9 bytes per lossless stage (tested), and the measured saving is the
`lossless` entry. Malformed or truncated compressed bytes raise WireFormatError.
"""

from __future__ import annotations

from adcbench.core.method import register_method
from adcbench.core.params import Param
from adcbench.core.pipeline import LosslessStage
from adcbench.wire import Codec, compress_container, decompress_container


class _Container(LosslessStage):
    codec: Codec
    eval_compressed = "same coding as training"
    deployment_policy = "compressed"  # lossless: the same accuracy either way
    rate_param = None
    terminal = False
    needs_attention = False

    def compress(self, data: bytes) -> bytes:
        return compress_container(data, self.codec, self.config["level"])

    def decompress(self, data: bytes) -> bytes:
        return decompress_container(data, expect=self.codec)


@register_method("zstd")
class Zstd(_Container):
    description = "lossless: zstandard over the whole encoded message (wire <= message + 9 B)"
    params = (Param("level", int, 3, "zstd compression level", low=1, high=22),)
    codec = Codec.ZSTD


@register_method("zlib")
class Zlib(_Container):
    description = "lossless: zlib (deflate) over the whole encoded message (wire <= message + 9 B)"
    params = (Param("level", int, 6, "zlib compression level", low=0, high=9),)
    codec = Codec.ZLIB
