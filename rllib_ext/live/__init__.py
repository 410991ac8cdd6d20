"""Everything that touches a live RLlib algorithm. The stack differences sit in
:mod:`.backends`; above it: observation filters (:mod:`.filters`), partial restore
(:mod:`.restore`), single-policy files in and out (:mod:`.policy_io`), lightweight
algorithms, the migration writer, the ``...Partial`` mixins (:mod:`.partial`) and Tune."""

from .compat import require_supported_ray

# Every live module imports this package first: outside the supported Ray releases, the
# first use of a live feature refuses in one line (see .compat), not deep inside RLlib.
require_supported_ray()
