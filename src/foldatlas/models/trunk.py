"""A memory-lean inference forward for ESMFold's folding-trunk blocks.

transformers' ``EsmFoldTriangularSelfAttentionBlock.forward`` is written for
training: each update of the pair representation ``z`` ([B, L, L, 128]) builds a
new tensor, the pair MLP holds two 4x-wide intermediates, and dropout modules
multiply by ones at inference. Its peak is about ten times the size of ``z``,
which caps the length that fits in memory.

:func:`lean_block_forward` computes the same function with the same weights
(Jumper et al. 2021, Algorithms 11-14 as ESMFold arranges them) but

* adds every pair update into ``z`` in place;
* runs the per-position parts (layer norms, projections, the pair MLP, the
  sequence-to-pair outer product) over row chunks of ``z``;
* keeps only the two projections ``a`` and ``b`` of a triangle multiplication
  and their product at full size, laid out channel-first so that the product
  needs no transposed copies;
* skips dropout (the identity at inference).

Peak memory is about five times the size of ``z``. Results equal transformers'
within float32 rounding (the tests check 1e-4 on coordinates, pLDDT and PAE).
"""

from __future__ import annotations

import types

__all__ = ["install_lean_trunk", "lean_block_forward", "configure_trunk", "trunk_configuration"]

_ROWS = 64  # rows of z per chunk in the per-position parts


def _pair_rows(length: int, rows: int | None = None):
    rows = rows or _ROWS  # read at call time, so tests can shrink it
    for start in range(0, length, rows):
        yield slice(start, min(start + rows, length))


def _triangle_multiply_(module, z, mask) -> None:
    """z += TriangleMultiplicativeUpdate(z) (Algorithms 11/12), in place.

    The projections ``a`` and ``b`` are written channel-first ([B, C, L, L]) by
    one matrix product per row chunk (the four gate/projection weights stacked),
    so that the triangle product is a single batched matmul with no transposed
    copies; transformers permutes [B, L, L, C] tensors and copies each of the
    C matrices before multiplying them.
    """
    import torch

    b_dim, length, _, c = z.shape
    weight = torch.cat([module.linear_a_g.weight, module.linear_a_p.weight,
                        module.linear_b_g.weight, module.linear_b_p.weight])  # [4C, C]
    bias = torch.cat([module.linear_a_g.bias, module.linear_a_p.bias,
                      module.linear_b_g.bias, module.linear_b_p.bias])[:, None]  # [4C, 1]
    a = z.new_empty(b_dim, c, length, length)  # a[b, c, i, k] = a_ik^c
    b = z.new_empty(b_dim, c, length, length)
    for batch in range(b_dim):
        for rows in _pair_rows(length):
            zn = module.layer_norm_in(z[batch, rows]).reshape(-1, c)  # [r*L, C]
            proj = torch.addmm(bias, weight, zn.t())  # [4C, r*L]
            gate_a, proj_a, gate_b, proj_b = proj.split(c)
            m = mask[batch, rows].reshape(1, -1)
            shape = (c, rows.stop - rows.start, length)
            a[batch, :, rows] = torch.sigmoid(gate_a).mul_(proj_a).mul_(m).view(shape)
            b[batch, :, rows] = torch.sigmoid(gate_b).mul_(proj_b).mul_(m).view(shape)
    a = a.view(b_dim * c, length, length)
    b = b.view(b_dim * c, length, length)
    if module._outgoing:
        p = torch.bmm(a, b.transpose(1, 2))  # p_ij = sum_k a_ik b_jk
    else:
        p = torch.bmm(a.transpose(1, 2), b)  # p_ij = sum_k a_ki b_kj
    del a, b
    p = p.view(b_dim, c, length, length)
    for batch in range(b_dim):
        for rows in _pair_rows(length):
            x = p[batch, :, rows].permute(1, 2, 0)  # [r, L, C]
            update = module.linear_z(module.layer_norm_out(x))
            update *= module.sigmoid(module.linear_g(module.layer_norm_in(z[batch, rows])))
            z[batch, rows] += update


def _sequence_to_pair_(module, sequence_state, z) -> None:
    """z += SequenceToPair(s), computed a block of rows at a time."""
    import torch

    s = module.proj(module.layernorm(sequence_state))
    q, k = s.chunk(2, dim=-1)
    for rows in _pair_rows(z.shape[1]):
        prod = q[:, None, :, :] * k[:, rows, None, :]
        diff = q[:, None, :, :] - k[:, rows, None, :]
        z[:, rows] += module.o_proj(torch.cat([prod, diff], dim=-1))


def _pair_to_sequence(module, z):
    """PairToSequence bias [B, L, L, heads], a block of rows at a time."""
    out = z.new_empty(z.shape[:-1] + (module.linear.out_features,))
    for rows in _pair_rows(z.shape[1]):
        out[:, rows] = module.linear(module.layernorm(z[:, rows]))
    return out


def _pair_mlp_(module, z) -> None:
    """z = z + MLP(z) (the pair transition), a block of rows at a time."""
    for rows in _pair_rows(z.shape[1]):
        z[:, rows] += module.mlp(z[:, rows])


def lean_block_forward(self, sequence_state, pairwise_state, mask=None, chunk_size=None, **_):
    """Inference forward of one ``EsmFoldTriangularSelfAttentionBlock`` (see module docstring).

    Parameters
    ----------
    sequence_state : Tensor, shape [B, L, C_s]
    pairwise_state : Tensor, shape [B, L, L, C_z]
        Updated in place and returned.
    mask : Tensor, shape [B, L]
    chunk_size : int or None
        Row chunk of the triangle attention.

    Returns
    -------
    tuple of Tensor
        The new sequence state and the (same) pair state.
    """
    z = pairwise_state.contiguous()
    if mask is None:
        mask = sequence_state.new_ones(sequence_state.shape[:2])
    bias = _pair_to_sequence(self.pair_to_sequence, z)
    y, _ = self.seq_attention(self.layernorm_1(sequence_state), mask=mask, bias=bias)
    del bias
    sequence_state = self.mlp_seq(sequence_state + y)
    _sequence_to_pair_(self.sequence_to_pair, sequence_state, z)
    tri_mask = mask.unsqueeze(2) * mask.unsqueeze(1)
    if getattr(self.tri_mul_out, "_foldatlas_kernels", None) == "cuequivariance":  # fused kernels installed
        z += self.tri_mul_out(z, mask=tri_mask)
        z += self.tri_mul_in(z, mask=tri_mask)
    else:
        _triangle_multiply_(self.tri_mul_out, z, tri_mask)
        _triangle_multiply_(self.tri_mul_in, z, tri_mask)
    z += self.tri_att_start(z, mask=tri_mask, chunk_size=chunk_size)
    z += self.tri_att_end(z, mask=tri_mask, chunk_size=chunk_size)
    _pair_mlp_(self.mlp_pair, z)
    return sequence_state, z


def install_lean_trunk(model) -> int:
    """Use :func:`lean_block_forward` for every trunk block of an ``EsmForProteinFolding``.

    Only for inference: the in-place updates do not support autograd.

    Returns
    -------
    int
        The number of blocks changed.
    """
    return configure_trunk(model, lean=True)


def _under_autocast(forward, dtype_name: str):
    """``forward`` run under autocast, its outputs returned in the dtypes of its inputs."""
    import torch

    dtype = getattr(torch, dtype_name)

    def block_forward(self, sequence_state, pairwise_state, mask=None, chunk_size=None, **kwargs):
        with torch.autocast(device_type=pairwise_state.device.type, dtype=dtype):
            s, z = forward(self, sequence_state, pairwise_state, mask=mask, chunk_size=chunk_size, **kwargs)
        return s.to(sequence_state.dtype), z.to(pairwise_state.dtype)

    return block_forward


def configure_trunk(model, lean: bool, autocast: str | None = None) -> int:
    """Set the forward of every trunk block of an ``EsmForProteinFolding``.

    Parameters
    ----------
    model : transformers.EsmForProteinFolding
    lean : bool
        :func:`lean_block_forward` (inference only, about half the activation memory) or transformers' own.
    autocast : str, optional
        Run each block under ``torch.autocast`` in this dtype (``"bfloat16"``): matrix products in 16 bits,
        reductions, norms and the residual pair and sequence states in float32. The structure module and the
        heads, outside the blocks, stay in float32.

    Returns
    -------
    int
        The number of blocks; a call with the current configuration changes nothing.
    """
    blocks = list(model.trunk.blocks)
    wanted = (bool(lean), autocast)
    if getattr(model.trunk, "_foldatlas_blocks", None) == wanted:
        return len(blocks)
    for block in blocks:
        forward = lean_block_forward if lean else type(block).forward
        if autocast:
            forward = _under_autocast(forward, autocast)
        block.forward = types.MethodType(forward, block)
    model.trunk._foldatlas_blocks = wanted
    return len(blocks)


def trunk_configuration(model) -> tuple[bool, str | None]:
    """``(lean, autocast)`` as :func:`configure_trunk` last set them (transformers' own forward: ``(False, None)``)."""
    return getattr(model.trunk, "_foldatlas_blocks", (False, None))
