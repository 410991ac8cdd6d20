"""Byte formats, decoded without running code: safe pickle, safetensors, msgpack, the torch zip,
and byte-level pickle patching. Imports only :mod:`..storage`, :mod:`..lazy`, :mod:`..tensors`
and :mod:`rllib_ext.errors`."""
