"""Acting without Ray: RLlib's default networks in numpy, and their ONNX mirror.

Rule: imports :mod:`rllib_ext.convert`, :mod:`rllib_ext.checkpoint` and
:mod:`rllib_ext.errors`; torch and onnx only inside the ONNX writer's functions.
"""
