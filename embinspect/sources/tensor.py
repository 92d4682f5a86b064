"""What a stored tensor is, whichever file format holds it: its name, dtype, shape and
where its bytes lie (``TensorHeader``), the dtypes and ggml types embinspect knows, and the
first bytes that tell file formats apart.

Both header readers (``safetensors_header``, ``gguf_file``) build ``TensorHeader``s; the
table reader (``embinspect.tables.table``) reads rows through them.
"""

from __future__ import annotations

from dataclasses import dataclass

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class GgmlType:
    """A ggml tensor type: ``block_size`` values are stored in ``type_size`` bytes."""

    name: str
    block_size: int
    type_size: int


# ggml type id -> type, as ggml.h numbers them (ids 4, 5, 31-33 and 36-38 were removed).
GGML_TYPES: dict[int, GgmlType] = {
    number: GgmlType(name, block, size)
    for number, name, block, size in (
        (0, "F32", 1, 4), (1, "F16", 1, 2), (2, "Q4_0", 32, 18), (3, "Q4_1", 32, 20),
        (6, "Q5_0", 32, 22), (7, "Q5_1", 32, 24), (8, "Q8_0", 32, 34), (9, "Q8_1", 32, 40),
        (10, "Q2_K", 256, 84), (11, "Q3_K", 256, 110), (12, "Q4_K", 256, 144),
        (13, "Q5_K", 256, 176), (14, "Q6_K", 256, 210), (15, "Q8_K", 256, 292),
        (16, "IQ2_XXS", 256, 66), (17, "IQ2_XS", 256, 74), (18, "IQ3_XXS", 256, 98),
        (19, "IQ1_S", 256, 50), (20, "IQ4_NL", 32, 18), (21, "IQ3_S", 256, 110),
        (22, "IQ2_S", 256, 82), (23, "IQ4_XS", 256, 136), (24, "I8", 1, 1), (25, "I16", 1, 2),
        (26, "I32", 1, 4), (27, "I64", 1, 8), (28, "F64", 1, 8), (29, "IQ1_M", 256, 56),
        (30, "BF16", 1, 2), (34, "TQ1_0", 256, 54), (35, "TQ2_0", 256, 66),
        (39, "MXFP4", 32, 17), (40, "NVFP4", 64, 36), (41, "Q1_0", 128, 18),
    )
}  # fmt: skip
# Stored as plain values: read in place like a safetensors tensor of the same name.
PLAIN_FLOAT_TYPES = ("F64", "F32", "F16", "BF16")
INTEGER_TYPES = ("I8", "I16", "I32", "I64")


# Bytes per element of every dtype the safetensors format names with a whole number of
# bytes (F4 and F6 pack several values a byte and are left out of the size check).
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1, "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1, "F8_E8M0": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1,
    "BOOL": 1, "C64": 8,
}  # fmt: skip
# The real-valued dtypes whose rows embinspect can read and score (upcast to float32 and
# float64). Integers and bool hold no embedding we could score; F8_E8M0 is a scale format
# (powers of two, no sign) that safetensors' torch binding does not read.
SCORABLE_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ")

# First bytes of the pickle-based formats we refuse to open (zip of torch.save, raw pickle).
PICKLE_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass(frozen=True)
class TensorHeader:
    """One tensor as the header describes it; ``nbytes`` comes from its data offsets."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    file: str  # file name relative to the checkpoint root, as in an index weight_map
    offset: int = 0  # where the tensor's bytes start in the file
    ggml_type: int | None = (
        None  # set for a tensor of a GGUF file (``embinspect.sources.gguf_file``)
    )

    @property
    def is_scorable(self) -> bool:
        """Whether embinspect can read this tensor's values as real numbers."""
        if self.ggml_type is not None:
            # Any known float or quantized ggml type; whether the installed gguf package
            # dequantizes it is asked when the table is opened (``table._dequantizer``).
            known = self.ggml_type in GGML_TYPES
            return known and self.dtype not in INTEGER_TYPES
        return self.dtype in SCORABLE_DTYPES

    @property
    def is_quantized(self) -> bool:
        """A GGUF tensor stored in quantized blocks: rows are dequantized to float32 to read."""
        return self.ggml_type is not None and self.dtype not in PLAIN_FLOAT_TYPES

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count
