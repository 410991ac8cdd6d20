"""Byte formats decoded without running code (safe pickle, safetensors, msgpack, the torch zip).

Rule: imports only :mod:`..storage`, :mod:`..lazy`, :mod:`..tensors` and
:mod:`rllib_ext.errors`; the rest of :mod:`rllib_ext.checkpoint` stands above them.
"""
