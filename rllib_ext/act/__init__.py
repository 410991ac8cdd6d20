"""Acting without Ray: RLlib's default networks in numpy (:mod:`.nets`), a policy that acts
with them (:mod:`.numpy_policy`), and its ONNX mirror (:mod:`.onnx_export`, the one module
here that imports torch and onnx, inside the writer)."""
