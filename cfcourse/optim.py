"""Row-wise optimisers: each step updates only the rows a batch looked up.

A dense optimiser (Adam, fastai's decoupled weight decay) updates *every* row of every
embedding at every step, although a batch of ratings looks up only a few thousand rows: with
ML-25M's 162,541 users and 59,047 films that is ~22 M numbers per step, most untouched by the
data. :class:`RowAdagrad` keeps one Adagrad accumulator per row and steps the looked-up rows
from their sparse gradients; :class:`FusedRowAdagrad` does the same update for
:class:`~cfcourse.models.sparse_dot_bias.SparseDotBias` with the gradients written out by hand
(a test checks they equal autograd's), in one pass per batch.
"""

from __future__ import annotations

import torch

from cfcourse.models.sparse_dot_bias import SparseDotBias

__all__ = ["FusedRowAdagrad", "RowAdagrad"]


class RowAdagrad(torch.optim.Optimizer):
    """Row-wise Adagrad: one accumulated squared gradient per *row*, updates on touched rows only.

    .. math::

        G_r = \\sum_{b:\\,\\mathrm{row}(b)=r} g_b, \\qquad
        a_r \\leftarrow a_r + \\operatorname{mean}_k G_{rk}^2, \\qquad
        w_r \\leftarrow w_r - \\frac{\\mathrm{lr}}{\\sqrt{a_r} + \\epsilon} G_r

    The state is one number per row instead of Adam's two per weight, and a step
    reads and writes only the rows in the batch's sparse gradient. This is the
    optimiser large recommender systems commonly use for embedding tables
    (e.g. TorchRec's "row-wise Adagrad"). Dense gradients (every row) work too.

    Examples
    --------
    >>> emb = torch.nn.Embedding(5, 2, sparse=True)
    >>> opt = RowAdagrad(emb.parameters(), lr=0.1)
    >>> emb(torch.tensor([1, 1, 3])).sum().backward(); opt.step()
    """

    def __init__(self, params, lr: float = 0.05, eps: float = 1e-8):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}.")
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group["lr"], group["eps"])

    def _update(self, p: torch.Tensor, grad: torch.Tensor, lr: float, eps: float) -> None:
        if grad.is_sparse:  # duplicates are summed once per unique row
            rows, inverse = torch.unique(grad._indices()[0], return_inverse=True)
            values = grad._values()
            summed = torch.zeros((len(rows), *values.shape[1:]), dtype=p.dtype, device=p.device)
            summed.index_add_(0, inverse, values)
        else:
            rows, summed = torch.arange(p.shape[0], device=p.device), grad
        self._step_rows(p, rows, summed, lr, eps)

    def _step_rows(self, p: torch.Tensor, rows: torch.Tensor, summed: torch.Tensor,
                   lr: float, eps: float) -> None:
        """The Adagrad step on distinct ``rows`` of ``p``, given their summed gradients."""
        state = self.state[p]
        if "sum" not in state:
            state["sum"] = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
        total = state["sum"][rows] + summed.reshape(len(rows), -1).pow(2).mean(dim=1)  # (U,)
        state["sum"][rows] = total
        scale = (lr / (total.sqrt() + eps)).view(-1, *([1] * (summed.dim() - 1)))
        p.index_add_(0, rows, -scale * summed)


class FusedRowAdagrad(RowAdagrad):
    """:class:`RowAdagrad` for :class:`SparseDotBias`, with the gradients written out by hand.

    For the loss that :func:`fit_sparse` minimises, the gradients are short formulas
    (with :math:`e_b = \\hat r_b - r_b` over a batch of size :math:`B`)::

        dL/dp_u = 2/B * (e_b q_i + λ p_u)      dL/db_u = 2/B * (e_b + λ_b b_u)
        dL/dq_i = 2/B * (e_b p_u + λ q_i)      dL/db_i = 2/B * (e_b + λ_b b_i)

    :meth:`train_step` computes them directly and applies exactly the update
    :class:`RowAdagrad` would (duplicates summed per row, one accumulator per row),
    without autograd's graph or sparse-tensor bookkeeping. Duplicate rows are found
    in O(B) with a scratch array and ``scatter_reduce`` instead of a sort, and each
    side's factor and bias gradients are summed per row in one pass.

    Examples
    --------
    >>> model = SparseDotBias(n_users=3, n_items=4, n_factors=2, mean=3.0)
    >>> opt = FusedRowAdagrad(model, lr=0.1)
    >>> sse = opt.train_step(torch.tensor([0, 2]), torch.tensor([1, 1]), torch.tensor([4.0, 2.0]))
    """

    def __init__(self, model: SparseDotBias, lr: float = 0.05, eps: float = 1e-8):
        if not isinstance(model, SparseDotBias):
            raise TypeError(f"FusedRowAdagrad trains a SparseDotBias, got {type(model).__name__}; "
                            "use optimizer='row_adagrad' for other models.")
        self.model = model
        self.tables = [model.user_factors.weight, model.item_factors.weight,
                       model.user_bias.weight, model.item_bias.weight]
        super().__init__(self.tables, lr=lr, eps=eps)
        device = self.tables[0].device
        self._slots = [torch.empty(t.shape[0], dtype=torch.long, device=device)
                       for t in self.tables[:2]]

    def _distinct(self, slot: torch.Tensor, idx: torch.Tensor, positions: torch.Tensor):
        """The distinct rows in ``idx`` (in order of last occurrence), and each position's place.

        Every write below is defined with duplicate indices: the first writes the same value
        at every duplicate, ``scatter_reduce`` keeps each row's last position (``amax``), and
        the third writes distinct rows only.
        """
        slot[idx] = -1  # (only the rows in idx are read below)
        slot.scatter_reduce_(0, idx, positions, reduce="amax")  # slot[r] = last position of r
        rows = idx[(slot[idx] == positions).nonzero().squeeze(1)]  # (U,)
        slot[rows] = torch.arange(len(rows), device=idx.device)
        return rows, slot[idx]  # (U,), (B,)

    def _apply(self, factors, bias, grad, rows, place, lr, eps) -> None:
        """Sum ``grad`` (B, k+1: factors, then bias) per row; Adagrad step on those rows."""
        summed = grad.new_zeros(len(rows), grad.shape[1]).index_add_(0, place, grad)  # (U, k+1)
        k = factors.shape[1]
        self._step_rows(factors, rows, summed[:, :k], lr, eps)
        self._step_rows(bias, rows, summed[:, k:], lr, eps)

    def train_step(self, users: torch.Tensor, items: torch.Tensor, y: torch.Tensor,
                   reg: float = 0.0, reg_bias: float = 0.0) -> torch.Tensor:
        """One step on a batch; returns the batch's summed squared error (before the step)."""
        return self.step(batch=(users, items, y, reg, reg_bias))

    @torch.no_grad()
    def step(self, closure=None, batch=None):
        """With ``batch``, the fused step of :meth:`train_step`; without, :class:`RowAdagrad`'s."""
        if batch is None:
            return super().step(closure)
        users, items, y, reg, reg_bias = batch
        wu, wi, bu_w, bi_w = self.tables
        b, k = len(users), wu.shape[1]
        p, q = wu.index_select(0, users), wi.index_select(0, items)  # (B, k)
        bu, bi = bu_w.index_select(0, users), bi_w.index_select(0, items)  # (B, 1)
        err = (p * q).sum(dim=1, keepdim=True).add_(bu).add_(bi).add_(self.model.mean)
        err.sub_(y[:, None])  # (B, 1)
        sse = err.pow(2).sum()
        e = err.mul_(2.0 / b)
        lr, eps = self.param_groups[0]["lr"], self.param_groups[0]["eps"]
        positions = torch.arange(b, device=users.device)
        for idx, own, other, own_bias, factors, bias, slot in (
                (users, p, q, bu, wu, bu_w, self._slots[0]),
                (items, q, p, bi, wi, bi_w, self._slots[1])):
            grad = torch.empty(b, k + 1, dtype=own.dtype, device=own.device)  # factors | bias
            torch.mul(other, e, out=grad[:, :k])
            grad[:, :k].add_(own, alpha=2.0 * reg / b)
            torch.add(e, own_bias, alpha=2.0 * reg_bias / b, out=grad[:, k:])
            rows, place = self._distinct(slot, idx, positions)
            self._apply(factors, bias, grad, rows, place, lr, eps)
        return sse
