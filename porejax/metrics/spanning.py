"""The spanning cluster of a voxel phase: voxels 6-connected to both faces of axis 0, by a jitted flood
fill on a bit-packed mask."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from porejax.metrics.stencil import shift

_WORD_BITS = 32


def pack_bits(mask: jax.Array) -> jax.Array:
    """(..., W) bool -> (..., ceil(W / 32)) uint32: bit b of word j is mask[..., 32 j + b] (zero-padded)."""
    width, words = mask.shape[-1], -(-mask.shape[-1] // _WORD_BITS)
    bits = jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, words * _WORD_BITS - width)]).astype(jnp.uint32)
    bits = bits.reshape(*mask.shape[:-1], words, _WORD_BITS) << jnp.arange(_WORD_BITS, dtype=jnp.uint32)
    return bits.sum(axis=-1, dtype=jnp.uint32)  # distinct bits: the sum is their bitwise or


def unpack_bits(words: jax.Array, width: int) -> jax.Array:
    """Inverse of `pack_bits`: (..., ceil(W / 32)) uint32 -> (..., W) bool."""
    bits = (words[..., None] >> jnp.arange(_WORD_BITS, dtype=jnp.uint32)) & 1
    return bits.reshape(*words.shape[:-1], -1)[..., :width].astype(bool)


def spanning_cluster(mask: jax.Array, periodic_sides: bool) -> jax.Array:
    """Voxels of `mask` (L, H, W) 6-connected to both faces of axis 0: jitted flood fill from each face.

    The mask is bit-packed along W (32 voxels per word), so one dilation step costs ~1/32 of a pass over
    the voxels: along W it is a bit shift with carries between neighbouring words. One dilation step per
    loop iteration (unrolling several lets XLA fuse them into a far slower kernel).
    """
    width = mask.shape[-1]
    packed = pack_bits(mask)
    masks = jnp.stack([packed, packed])
    seeds = jnp.zeros_like(masks).at[0, 0].set(packed[0]).at[1, -1].set(packed[-1])
    top_word, top_bit = divmod(width - 1, _WORD_BITS)  # where voxel W - 1 lives
    word = jnp.arange(masks.shape[-1])
    high = _WORD_BITS - 1

    def body(state):
        filled, _ = state
        grown = filled | (filled << 1) | (filled >> 1)  # along W inside each word
        grown = grown | (shift(filled, 3, -1, False) >> high) | (shift(filled, 3, 1, False) << high)
        for axis in (1, 2):
            per = periodic_sides and axis == 2
            grown = grown | shift(filled, axis, 1, per) | shift(filled, axis, -1, per)
        if periodic_sides:  # along W across the wrap: voxel W - 1 <-> voxel 0
            last, first = (filled[..., top_word] >> top_bit) & 1, filled[..., 0] & 1
            grown = grown | jnp.where(word == 0, last[..., None], 0)
            grown = grown | jnp.where(word == top_word, (first << top_bit)[..., None], 0)
        grown = grown & masks
        return grown, jnp.any(grown != filled)

    filled, _ = jax.lax.while_loop(lambda s: s[1], body, (seeds, jnp.array(True)))
    return unpack_bits(filled[0] & filled[1], width)
