"""The jit options of the numba backend: ``_KERNEL`` for every kernel, ``_INLINE`` for the
helpers inlined into them."""

# error_model="numpy": IEEE division (x/0 -> inf/nan) instead of raising ZeroDivisionError, so an
# empty set's loss is NaN as in torch. _nrt=False everywhere, the entry points included: no
# array costs reference counting, and no entry wraps each array argument in a new
# reference-counted handle (~0.45 us of a seed-size call). Scratch comes from _scratch.
_KERNEL = dict(cache=True, nogil=True, error_model="numpy", _nrt=False)
# Constants reach jitted callees as np.intp(...) / np.bool_(...): a literal argument would make
# numba compile the callee once more, specialised for it.
# The helpers that stand for code repeated across kernels are inlined in numba's IR: as calls
# (one per step or per row) they cost a few per cent of a small problem's training time.
_INLINE = dict(_KERNEL, inline="always")
