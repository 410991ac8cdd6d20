"""The pickle inside a ``torch.save`` zip (Ray ~2.30's ``.pt`` state files), read without torch."""

from __future__ import annotations

import struct
import zlib

from ...errors import CheckpointFormatError
from ..storage import MemorySource, Source, WindowSource


def torch_zip_payload(source: Source, where: str) -> Source:
    """The pickle inside a ``torch.save`` zip archive (``<archive>/data.pkl``).

    torch stores members uncompressed, so the pickle is a byte range of the file: tensor
    data inside it can stay unread. Its CRC is still checked, a chunk at a time.
    """
    import zipfile  # only for Ray ~2.30's .pt files: kept out of every other read's start-up

    try:
        with source.stream() as f, zipfile.ZipFile(f) as z:
            names = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(names) != 1:
                raise CheckpointFormatError(
                    f"{where}: expected one data.pkl in the torch archive, found {len(names)} "
                    f"among {', '.join(z.namelist()[:8])}"
                )
            info = z.getinfo(names[0])
            if info.compress_type == zipfile.ZIP_STORED:
                f.seek(info.header_offset)
                head = f.read(30)
                if len(head) == 30 and head[:4] == b"PK\x03\x04":
                    n, m = struct.unpack("<HH", head[26:30])
                    start = info.header_offset + 30 + n + m
                    if start + info.file_size <= source.size:
                        window = WindowSource(source, start, info.file_size, where)
                        if crc32(window) != info.CRC:
                            raise zipfile.BadZipFile(f"Bad CRC-32 for file {names[0]!r}")
                        return window
            return MemorySource(z.read(names[0]), where)
    except zipfile.BadZipFile as e:
        raise CheckpointFormatError(
            f"{where}: not a torch.save zip archive (legacy pre-1.6 torch format?): {e}"
        ) from e


def crc32(source: Source) -> int:
    crc, chunk = 0, bytearray(1 << 20)
    for pos in range(0, source.size, len(chunk)):
        view = memoryview(chunk)[: min(len(chunk), source.size - pos)]
        source.readinto_at(pos, view)
        crc = zlib.crc32(view, crc)
        view.release()
    return crc
