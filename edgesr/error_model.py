"""How far may a correct implementation of a graph stray from its exact result? A rounding-error
model, evaluated per output element, so parity bounds hold on any correct CPU.

Model (probabilistic rounding-error analysis, Higham & Mary, SIAM J. Sci. Comput. 41(5), 2019):
every floating-point operation rounds its exact result r to r(1 + d) with |d| <= u, the d
independent with mean zero, so Var(d) <= u^2/3 (u = 2^-24 for fp32, 2^-11 for fp16 arithmetic).
- An n-term dot product s = sum_i t_i + b, summed in ANY order (blocked, SIMD lanes, FMA or
  not), errs by e = sum_k d_k S_k over its partial sums |S_k| <= m = sum_i |t_i| + |b|, hence
      Var(e) <= (u^2/3) (n + 1) m^2.
  This is why a bound must scale with the magnitudes m along the path: trained SR kernels cancel
  heavily (an ECBSR layer's m is 6-14x its |s|), so the same error is tiny on one output and
  large on another.
- Errors reach the output through the graph's Jacobian J, so Var(out) = sum_ops J^2 Var(op):
  variances are pushed forward op by op, through convs as conv(Var, W^2), through activations
  as slope^2 (both slopes near a kink), through averages as mean(Var)/n.
- A correct implementation then lies within LAMBDA * sigma of the exact (float64) result; a
  real math error (a wrong tap, a swapped channel, a lost residual) is orders larger.
- Hard decisions (SMSR's mask = logit1 > logit0, ClassSR's argmax routing) are exact unless
  the margin lies within LAMBDA * sigma of a tie: a correct CPU may then decide either way. Each
  such decision is re-run flipped (in float64, later decisions re-evaluated), and the sum of the
  flips' effects |out_flipped - out| is an allowance added to the bound: first order, each flip
  on its own. Beyond MAX_FLIPS near ties on one input, what they reach through local ops is
  exempt from the bound instead (counted and reported; a global average counts exempt inputs
  as errors of their own size).

The model is evaluated by running the graph in float64 under a TorchFunctionMode that carries
(value, variance, exempt) for every tensor. `Precision` adds what a file format does on top of
fp32 arithmetic: fp16 weights (rounded exactly, so their effect is part of the expected value,
not of the noise), fp16 everything (a phone GPU's default: fp16 weights, every tensor stored in
fp16 and every op rounding at u = 2^-11) or int8 weights and activations (TFLite's scheme:
per-channel symmetric weights, activations clamped to their calibrated ranges and rounded to
256 levels, modelled as noise of variance step^2/12). The int8 ranges are the file's own: every
tensor the file stores in int8 is matched to the graph op that computes it by value
(`int8_ranges`). An op the model has no rule for raises UnsupportedOp: no silent bound.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

MAX_FLIPS = 16  # near-tie decisions per input whose effect is measured by a flipped re-run
LAMBDA = 7.0  # bound = LAMBDA sigma: a Gaussian tail of 3e-12 per element, on a variance that is itself an upper bound
FP32_U = 2.0 ** -24
FP16_U = 2.0 ** -11


class UnsupportedOp(RuntimeError):
    """The graph uses an op the error model has no rule for."""


@dataclass(frozen=True)
class Precision:
    """What a file format stores and computes in: weight storage, activation storage, arithmetic."""

    name: str
    unit_roundoff: float = FP32_U  # of the arithmetic
    weights: str = "fp32"  # fp32 | fp16 | int8
    activations: str = "fp32"  # fp32 | fp16 (every tensor, the input too) | int8 (per-tensor ranges read from the file)


PRECISIONS = {
    "fp32": Precision("fp32"),
    "fp16": Precision("fp16", weights="fp16"),  # fp16 weights dequantized, fp32 arithmetic (XNNPACK on CPUs)
    "int8": Precision("int8", weights="int8", activations="int8"),
    # a GPU delegate that may lose precision (TFLite's default): fp16 weights, tensors and arithmetic
    "fp16-compute": Precision("fp16-compute", unit_roundoff=FP16_U, weights="fp16", activations="fp16"),
}


@dataclass
class Modelled:
    """What the error model says a graph computes on one input."""

    value: np.ndarray  # the exact (float64) result of the graph's math at its storage precision
    sigma: np.ndarray  # standard deviation of a correct implementation's error around `value`
    exempt: np.ndarray  # bool: downstream of more near-tie decisions than can be flipped, not bounded
    unstable_decisions: int = 0
    allowance: np.ndarray | float = 0.0  # summed effect of flipping each near-tie decision


@dataclass
class Ranges:
    """int8 ranges (lo, hi) of the graph input and of each computed tensor, by op call order;
    None where the file keeps that tensor out of int8 (fused away, or not an int8 tensor)."""

    input: tuple[float, float]
    ops: list[tuple[float, float] | None] = field(default_factory=list)

    @staticmethod
    def step(lo_hi: tuple[float, float]) -> float:
        """int8 quantization step of an asymmetric 256-level range."""
        return (lo_hi[1] - lo_hi[0]) / 255.0

    def to_dict(self) -> dict:
        return {"input": list(self.input), "ops": [list(r) if r is not None else None for r in self.ops]}

    @classmethod
    def from_dict(cls, d: dict) -> Ranges:
        return cls(tuple(d["input"]), [tuple(r) if r is not None else None for r in d["ops"]])


# --- op tables ------------------------------------------------------------------------------

T = torch.Tensor
_STRUCTURAL = {  # data movement: the error moves with the data, no rounding
    T.__getitem__, T.reshape, T.view, T.permute, T.transpose, T.t, T.contiguous, T.clone, T.flatten,
    T.unsqueeze, T.squeeze, T.expand, T.narrow, T.index_select, T.repeat_interleave, T.repeat, T.neg, T.flip,
    T.double, T.float, T.to, T.detach, torch.cat, torch.stack, torch.flatten, torch.split, torch.functional.split,
    T.split, T.chunk, torch.chunk, torch.pixel_shuffle, F.pixel_shuffle, torch.pixel_unshuffle,
    F.pixel_unshuffle, F.pad, torch._C._nn.pad, torch.index_select, torch.neg, torch.repeat_interleave,
}
_LIST_INPUT = {torch.cat, torch.stack}
_ARITH_OUT = {torch.cat, torch.stack}  # int8: requantized to the output range, so they round too
_CONSTANT = {T.new_zeros, T.new_ones, T.new_full, T.new_empty, torch.zeros_like, torch.ones_like, torch.zeros,
             torch.ones, torch.arange, torch.full, torch.empty}
_IGNORED = {T.__bool__, T.any, T.all, T.dim, T.size, T.numel, T.item, T.tolist, T.__len__, T.__iter__,
            T.requires_grad_, T.nonzero, torch.nonzero}
_DOT = {torch.conv2d: 0, F.conv2d: 0, torch.conv_transpose2d: 1, F.conv_transpose2d: 1, F.linear: 2,
        torch._C._nn.linear: 2}
_ADD = {T.add, T.add_, T.__add__, T.__radd__, T.__iadd__, torch.add, T.sub, T.sub_, T.__sub__, T.__rsub__,
        T.__isub__, torch.sub}
_MUL = {T.mul, T.mul_, T.__mul__, T.__rmul__, T.__imul__, torch.mul}
_DIV = {T.div, T.__truediv__, torch.div}
_RELU = {F.relu, torch.relu, T.relu, F.relu_, torch.relu_}
_PRELU = {F.prelu, torch.prelu}
_LEAKY = {F.leaky_relu, torch._C._nn.leaky_relu}
_SIGMOID = {torch.sigmoid, T.sigmoid, F.sigmoid}
_MEAN = {T.mean, torch.mean}
_AVG_POOL = {F.avg_pool2d, torch._C._nn.avg_pool2d}
_ADAPTIVE_POOL = {F.adaptive_avg_pool2d, torch._C._nn.adaptive_avg_pool2d}
_COMPARE = {T.gt, T.__gt__, torch.gt, T.lt, T.__lt__, torch.lt, T.ge, T.__ge__, T.le, T.__le__}
_EQUAL = {T.eq, T.__eq__, T.ne, T.__ne__, T.__invert__, T.logical_not, T.__and__, T.__or__}
_ARGMAX = {T.argmax, torch.argmax}


def _is_float(t: object) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def _sqrt0(v: torch.Tensor) -> torch.Tensor:
    return v.clamp(min=0).sqrt()


class _Tracker(TorchFunctionMode):
    """Runs a float64 graph and carries, per tensor, the variance of its rounding error and
    whether it is exempt (downstream of an unstable decision)."""

    def __init__(self, precision: Precision, ranges: Ranges | None = None, record: list | None = None,
                 stored: bool = False, flip: tuple[int, tuple] | None = None, exempt_near: bool = False):
        super().__init__()
        # decisions: (decision call index, index of one near-tie element) found; `flip` forces one
        # of them the other way; `exempt_near` taints what near ties reach instead
        self.decisions: list[tuple[int, tuple]] = []
        self.decision_calls = 0
        self.flip, self.exempt_near = flip, exempt_near
        # weights derived in float64 (a fold) and stored in fp32 carry a rounding of their own
        self.stored_noise = FP32_U ** 2 / 3.0 if stored else 0.0
        self.u2 = precision.unit_roundoff ** 2 / 3.0
        self.precision = precision
        self.int8 = precision.activations == "int8"
        self.ranges, self.record = ranges, record
        self.calls = 0
        self.unstable = 0
        # id(tensor) -> (weak reference, variance, exempt); an entry dies with its tensor
        self.state: dict[int, tuple[weakref.ref, torch.Tensor | None, torch.Tensor | None]] = {}

    # -- per-tensor state --
    def _entry(self, t: object) -> tuple | None:
        if not isinstance(t, torch.Tensor):
            return None
        entry = self.state.get(id(t))
        return entry if entry is not None and entry[0]() is t else None

    def var(self, t: object) -> torch.Tensor | float:
        """Variance of a tensor's error; a constant of the graph (a weight) is exact, or carries
        its fp32 storage rounding when the graph was derived (`stored`)."""
        entry = self._entry(t)
        if entry is not None and entry[1] is not None:
            return entry[1]
        if not _is_float(t):
            return 0.0
        return self.stored_noise * t.detach() ** 2 if self.stored_noise else torch.zeros_like(t, dtype=torch.float64)

    def exempt(self, t: object) -> torch.Tensor | None:
        entry = self._entry(t)
        return entry[2] if entry is not None else None

    def put(self, t: torch.Tensor, var: torch.Tensor | None, exempt: torch.Tensor | None) -> None:
        if exempt is not None and not bool(exempt.any()):
            exempt = None
        key = id(t)
        if key not in self.state:
            weakref.finalize(t, self.state.pop, key, None)
        self.state[key] = (weakref.ref(t), var, exempt)

    def watch(self, x: torch.Tensor) -> torch.Tensor:
        """The graph input: exact, except that fp16 storage rounds it and int8 quantizes it."""
        if not self.int8 or self.record is not None:
            fp16 = self.precision.activations == "fp16"
            self.put(x, self.u2 * x.detach() ** 2 if fp16 else torch.zeros_like(x), None)
            return x
        lo, hi = self.ranges.input
        x = x.clamp(lo, hi)
        self.put(x, torch.full_like(x, Ranges.step(self.ranges.input) ** 2 / 12.0), None)
        return x

    # -- dispatch --
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _IGNORED or getattr(func, "__name__", "") == "__get__":
            return func(*args, **kwargs)
        if func is T.__setitem__:
            return self._setitem(*args)
        out = func(*args, **kwargs)
        if func in _CONSTANT:
            return out
        if func in _STRUCTURAL:
            self._structural(func, args, kwargs, out)
            if func in _ARITH_OUT and self.int8:
                out = self._quantize_activation(out)
            return out
        if func in _COMPARE or func in _ARGMAX or func in _EQUAL:
            self._decision(func, args, kwargs, out)
            return out
        if not any(_is_float(o) for o in (out if isinstance(out, (tuple, list)) else [out])):
            if any(self.exempt(a) is not None for a in _flat(args)):
                raise UnsupportedOp(f"error model: no rule for {_name(func)} on exempt inputs")
            return out
        rule = self._rule(func)
        if rule is None:
            raise UnsupportedOp(f"error model: no rule for {_name(func)}; add one to edgesr/error_model.py")
        var, exempt = rule(func, args, kwargs, out)
        self.put(out, var, exempt)
        if self.int8 and func not in _RELU:  # every computed tensor is stored in int8 (ReLU stays on the grid)
            out = self._quantize_activation(out)
        return out

    def _rule(self, func) -> Callable | None:
        for table, rule in ((_DOT, self._dot), (_ADD, self._add), (_MUL, self._mul), (_DIV, self._div),
                            (_RELU, self._relu), (_PRELU, self._prelu), (_LEAKY, self._leaky),
                            (_SIGMOID, self._sigmoid), (_MEAN, self._mean), (_AVG_POOL, self._avg_pool),
                            (_ADAPTIVE_POOL, self._adaptive_pool), ({F.interpolate}, self._interpolate)):
            if func in table:
                return rule
        return None

    def _quantize_activation(self, out: torch.Tensor) -> torch.Tensor:
        """int8 storage: clamp to the tensor's range and add the rounding noise step^2/12."""
        index = self.calls
        self.calls += 1
        if self.record is not None:
            self.record.append(out.detach().clone())
            return out
        if index >= len(self.ranges.ops) or self.ranges.ops[index] is None:
            return out
        lo, hi = self.ranges.ops[index]
        var, exempt = self.var(out), self.exempt(out)
        clamped = out.clamp(lo, hi)
        self.put(clamped, var + Ranges.step((lo, hi)) ** 2 / 12.0, exempt)
        return clamped

    # -- rules: each returns (variance, exempt) of the output --
    def _structural(self, func, args, kwargs, out) -> None:
        def mapped(fn):
            if func in _LIST_INPUT:
                return func([fn(t) for t in args[0]], *args[1:], **kwargs)
            if func in (F.pad, torch._C._nn.pad) and kwargs.get("mode", args[2] if len(args) > 2 else "constant") \
                    == "constant":
                rest = {k: v for k, v in kwargs.items() if k != "value"}
                return func(fn(args[0]), *args[1:3], **rest)
            return func(fn(args[0]), *args[1:], **kwargs)

        var = mapped(lambda t: self.var(t) if _is_float(t) else torch.zeros_like(t, dtype=torch.float64))
        if func in (T.double, T.float, T.to) and self.precision.unit_roundoff:
            var = var + self.u2 * out.detach() ** 2  # a cast back to storage precision rounds
        tainted = [a for a in (args[0] if func in _LIST_INPUT else [args[0]]) if self.exempt(a) is not None]
        exempt = None
        if tainted:
            exempt = _positive(mapped(lambda t: self.exempt(t).double() if self.exempt(t) is not None
                                      else torch.zeros_like(t, dtype=torch.float64)))
        index_taint = self._index_taint(func, args)
        if index_taint is not None:
            exempt = index_taint if exempt is None else exempt | index_taint
        outs = out if isinstance(out, (tuple, list)) else [out]
        vars_ = var if isinstance(var, (tuple, list)) else [var]
        exempts = exempt if isinstance(exempt, (tuple, list)) else [exempt] * len(outs)
        for o, v, e in zip(outs, vars_, exempts, strict=True):
            if isinstance(o, torch.Tensor):
                self.put(o, v if o.is_floating_point() else None, e)

    def _index_taint(self, func, args) -> torch.Tensor | None:
        """x[mask] with an exempt boolean mask: the rows it selects may differ, so they are exempt."""
        if func is not T.__getitem__ or not isinstance(args[1], torch.Tensor):
            return None
        taint = self.exempt(args[1])
        if taint is None:
            return None
        rows = taint[args[1]]
        return rows.reshape(rows.shape + (1,) * (args[0].dim() - args[1].dim())).expand(args[0][args[1]].shape)

    def _setitem(self, target: torch.Tensor, index, value) -> None:
        T.__setitem__(target, index, value)
        var = self.var(target)
        var = var.clone() if isinstance(var, torch.Tensor) else torch.zeros_like(target, dtype=torch.float64)
        var[index] = self.var(value) if _is_float(value) else 0.0
        exempt = self.exempt(target)
        value_taint = self.exempt(value)
        index_taint = self._index_taint(T.__getitem__, (target, index)) if isinstance(index, torch.Tensor) else None
        if exempt is not None or value_taint is not None or index_taint is not None:
            exempt = exempt.clone() if exempt is not None else torch.zeros_like(target, dtype=torch.bool)
            exempt[index] = value_taint if value_taint is not None else False
            if index_taint is not None:
                exempt[index] |= index_taint
        self.put(target, var, exempt)

    def _decision(self, func, args, kwargs, out) -> None:
        """gt/lt/argmax: exact unless the margin is within LAMBDA sigma of a tie (see the module doc)."""
        exempt = _or(*(self.exempt(a) for a in args if isinstance(a, torch.Tensor)), shape=out.shape)
        near, runner_up = None, None
        if func in _COMPARE:
            a, b = args[0], args[1]
            if _is_float(a):
                margin = (a - b) if isinstance(b, torch.Tensor) else a - b
                near = margin.abs() < LAMBDA * _sqrt0(self.var(a) + self.var(b))
        elif func in _ARGMAX:
            logits, dim = args[0], args[1] if len(args) > 1 else kwargs.get("dim")
            if dim is None or kwargs.get("keepdim"):
                raise UnsupportedOp("error model: argmax needs a dim (and no keepdim)")
            if logits.shape[dim] > 1 and _is_float(logits):
                top = logits.topk(2, dim=dim)
                var = torch.as_tensor(self.var(logits)).expand_as(logits).gather(dim, top.indices)
                gap = top.values.select(dim, 0) - top.values.select(dim, 1)
                near = gap < LAMBDA * _sqrt0(var.sum(dim))
                runner_up = top.indices.select(dim, 1)
        if near is not None:
            call = self.decision_calls
            self.decision_calls += 1
            found = [tuple(int(i) for i in index) for index in torch.nonzero(near)]
            self.unstable += len(found)
            self.decisions += [(call, index) for index in found]
            if self.exempt_near and found:
                exempt = near if exempt is None else exempt | near
            if self.flip is not None and self.flip[0] == call:
                index = self.flip[1]
                out[index] = runner_up[index] if runner_up is not None else ~out[index]
        self.put(out, None, exempt)

    def _dot(self, func, args, kwargs, out):
        x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        rest, rest_kw = args[3:], {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}
        kind = _DOT[func]
        if kind == 0:
            n = weight[0].numel()
        elif kind == 1:  # conv_transpose: (in, out/groups, kh, kw)
            groups = (rest[3] if len(rest) > 3 else rest_kw.get("groups", 1))
            n = weight.shape[0] // groups * weight.shape[2] * weight.shape[3]
        else:
            n = weight.shape[-1]

        def apply(inp, w, b=None):
            return func(inp, w, b, *rest, **rest_kw)

        magnitude = apply(x.abs(), weight.abs(), bias.abs() if isinstance(bias, torch.Tensor) else None)
        var = apply(torch.as_tensor(self.var(x)).expand_as(x), weight ** 2)
        var_w = self._weight_var(weight)
        if isinstance(var_w, torch.Tensor) and bool(var_w.any()):
            var = var + apply(x ** 2, var_w)
        if isinstance(bias, torch.Tensor) and isinstance(self.var(bias), torch.Tensor) and self.var(bias).any():
            var = var + self.var(bias).reshape((-1,) + (1,) * (out.dim() - 2) if out.dim() > 2 else (-1,))
        var = var + self.u2 * (n + 1) * magnitude ** 2
        exempt = self.exempt(x)
        if exempt is not None:
            exempt = apply(exempt.to(x.dtype), torch.ones_like(weight)) > 0
        return var, exempt

    def _weight_var(self, weight: torch.Tensor) -> torch.Tensor | float:
        """Variance of a weight: its own rounding if computed in the graph, int8 storage noise."""
        var = self.var(weight)
        if self.precision.weights == "int8":  # symmetric: per output channel for convs, per tensor for dense
            step = weight.detach().abs().flatten(1).amax(dim=1) / 127.0 if weight.dim() > 2 else \
                weight.detach().abs().max().expand(weight.shape[0]) / 127.0
            shape = (-1,) + (1,) * (weight.dim() - 1)
            var = var + (step ** 2 / 12.0).reshape(shape).expand_as(weight)
        return var

    def _add(self, func, args, kwargs, out):
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        alpha = kwargs.get("alpha", 1)
        var = self._bvar(a, out) + (alpha ** 2) * self._bvar(b, out) + self.u2 * out.detach() ** 2
        return var, self._bexempt(out, a, b)

    def _mul(self, func, args, kwargs, out):
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        var = self._bvar(a, out) * _sq(b) + self._bvar(b, out) * _sq(a) + self.u2 * out.detach() ** 2
        if self.precision.weights == "int8" and _is_param(b, self.state) and not _is_param(a, self.state):
            var = var + _sq(a) * _int8_var(b)
        return var, self._bexempt(out, a, b)

    def _div(self, func, args, kwargs, out):
        a, b = args[0], args[1]
        var = self._bvar(a, out) / _sq(b) + self._bvar(b, out) * _sq(out) / _sq(b) + self.u2 * out.detach() ** 2
        return var, self._bexempt(out, a, b)

    def _piecewise(self, x, out, slope_neg):
        """Error through a piecewise-linear activation: slope^2, both slopes near the kink."""
        var = torch.as_tensor(self.var(x)).expand_as(x)
        near = x.abs() <= LAMBDA * _sqrt0(var)
        neg = torch.as_tensor(slope_neg, dtype=x.dtype)
        if neg.dim() >= 1 and x.dim() > 1 and neg.numel() > 1:
            neg = neg.reshape((1, -1) + (1,) * (x.dim() - 2))
        gain = torch.where(x > 0, torch.ones_like(x), neg.expand_as(x)) ** 2
        gain = torch.where(near, torch.maximum(torch.ones_like(x), neg.expand_as(x) ** 2), gain)
        rounding = self.u2 * torch.where(x < 0, out.detach() ** 2, torch.zeros_like(x))
        return gain * var + rounding, self.exempt(x)

    def _relu(self, func, args, kwargs, out):
        return self._piecewise(args[0], out, 0.0)

    def _prelu(self, func, args, kwargs, out):
        x, slope = args[0], args[1]
        var, exempt = self._piecewise(x, out, slope.detach())
        if self.precision.weights == "int8":
            shape = (1, -1) + (1,) * (x.dim() - 2) if slope.numel() > 1 else ()
            var = var + torch.where(x < 0, x ** 2, torch.zeros_like(x)) * _int8_var(slope).reshape(shape)
        return var, exempt

    def _leaky(self, func, args, kwargs, out):
        slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
        return self._piecewise(args[0], out, slope)

    def _sigmoid(self, func, args, kwargs, out):
        gain = (out * (1 - out)) ** 2
        return gain * self.var(args[0]) + 4 * self.u2 * out.detach() ** 2, self.exempt(args[0])

    def _reduce(self, x, reduced: Callable[[torch.Tensor], torch.Tensor], n: int, out):
        """An average of n elements: Var = mean(Var)/n + rounding of an (n+1)-term sum; exempt
        inputs count as errors of their own size (a global average dilutes a flip by 1/n)."""
        var = torch.as_tensor(self.var(x)).expand_as(x)
        exempt = self.exempt(x)
        if exempt is not None:
            var = var + torch.where(exempt, x.detach() ** 2, torch.zeros_like(x))
        return reduced(var) / n + self.u2 * (n + 1) * reduced(x.abs()) ** 2, None

    def _mean(self, func, args, kwargs, out):
        x = args[0]
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = kwargs.get("keepdim", args[2] if len(args) > 2 else False)
        dims = tuple(range(x.dim())) if dims is None else (dims if isinstance(dims, (tuple, list)) else (dims,))
        n = math.prod(x.shape[d] for d in dims)
        return self._reduce(x, lambda t: t.mean(dim=dims, keepdim=keep), n, out)

    def _avg_pool(self, func, args, kwargs, out):
        x, k = args[0], args[1] if len(args) > 1 else kwargs["kernel_size"]
        k = (k, k) if isinstance(k, int) else tuple(k)
        rest, rest_kw = args[2:], {kk: v for kk, v in kwargs.items() if kk != "kernel_size"}
        n = k[0] * k[1]
        var = func(torch.as_tensor(self.var(x)).expand_as(x), k, *rest, **rest_kw) / n \
            + self.u2 * (n + 1) * func(x.abs(), k, *rest, **rest_kw) ** 2
        exempt = self.exempt(x)
        return var, (F.max_pool2d(exempt.to(x.dtype), k, *rest[:1]) > 0) if exempt is not None else None

    def _adaptive_pool(self, func, args, kwargs, out):
        x = args[0]
        if tuple(out.shape[-2:]) != (1, 1):
            raise UnsupportedOp("error model: adaptive_avg_pool2d only to 1x1 (a global average)")
        return self._reduce(x, lambda t: t.mean(dim=(-2, -1), keepdim=True), x.shape[-2] * x.shape[-1], out)

    def _interpolate(self, func, args, kwargs, out):
        x = args[0]
        mode = kwargs.get("mode", "nearest")
        size_kw = {k: v for k, v in kwargs.items() if k in ("size", "scale_factor")}
        var = torch.as_tensor(self.var(x)).expand_as(x)
        if mode == "nearest":
            return F.interpolate(var, **size_kw, mode="nearest"), self._interp_exempt(x, size_kw)
        if mode not in ("bilinear", "bicubic"):
            raise UnsupportedOp(f"error model: no rule for interpolate mode {mode}")
        # sum_i w_i^2 v_i <= max v (the 2-D taps' squares sum to at most 1), the taps' |w| to at most
        # 1.25^2 for a = -0.75 (1 for bilinear): a max over the 4x4 support bounds both terms
        spread = F.max_pool2d(var, 5, 1, 2)
        taps = 16 if mode == "bicubic" else 4
        growth = 1.5625 if mode == "bicubic" else 1.0
        magnitude = F.max_pool2d(x.abs(), 5, 1, 2) * growth
        var = F.interpolate(spread + self.u2 * (taps + 1) * magnitude ** 2, **size_kw, mode="nearest")
        return var, self._interp_exempt(x, size_kw)

    def _interp_exempt(self, x, size_kw):
        exempt = self.exempt(x)
        if exempt is None:
            return None
        return F.interpolate(F.max_pool2d(exempt.to(x.dtype), 5, 1, 2), **size_kw, mode="nearest") > 0

    # -- broadcasting helpers --
    def _bvar(self, t, out) -> torch.Tensor | float:
        v = self.var(t)
        return v if isinstance(v, torch.Tensor) else 0.0

    def _bexempt(self, out, *operands):
        return _or(*(self.exempt(t) for t in operands), shape=out.shape)


def _sq(t) -> torch.Tensor | float:
    return t.detach() ** 2 if isinstance(t, torch.Tensor) else float(t) ** 2


def _positive(t):
    """float masks back to bool, through the nesting of a multi-output op."""
    if isinstance(t, (tuple, list)):
        return [_positive(x) for x in t]
    return t > 0


def _is_param(t, state) -> bool:
    """A leaf constant of the graph (a weight), not a computed tensor."""
    return isinstance(t, torch.Tensor) and t.is_floating_point() and id(t) not in state


def _int8_var(weight: torch.Tensor) -> torch.Tensor:
    step = weight.detach().abs().max() / 127.0
    return (step ** 2 / 12.0).expand_as(weight)


def _or(*masks, shape) -> torch.Tensor | None:
    present = [m for m in masks if m is not None]
    if not present:
        return None
    result = torch.zeros(shape, dtype=torch.bool)
    for m in present:
        result = result | m
    return result


def _flat(args) -> Iterable:
    for a in args:
        if isinstance(a, (list, tuple)):
            yield from a
        else:
            yield a


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))


# --- public API ------------------------------------------------------------------------------

def at_precision(module: nn.Module, precision: Precision) -> nn.Module:
    """A float64 copy of `module` whose weights are what the file stores: fp16 weights rounded
    exactly (their effect is deterministic); fp32 and int8 weights as they are (int8 weight
    rounding is modelled as noise, see _Tracker._weight_var)."""
    copied = copy.deepcopy(module).eval()
    with torch.no_grad():
        for t in list(copied.parameters()) + list(copied.buffers()):
            if t.is_floating_point() and precision.weights == "fp16":
                t.copy_(t.half().float())
    return copied.double()


def _run(module: nn.Module, x: np.ndarray, tracker: _Tracker,
         call: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    with torch.no_grad():
        inp = tracker.watch(torch.from_numpy(np.asarray(x, dtype=np.float64)))
        with tracker:
            return call(module, inp) if call is not None else module(inp)


def op_outputs(module: nn.Module, x: np.ndarray,
               call: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> list[np.ndarray]:
    """The exact value of every tensor an int8 file may store (each computed tensor but ReLU
    outputs), in op call order: what `match_ranges` aligns a file's int8 tensors with."""
    record: list[torch.Tensor] = []
    _run(at_precision(module, PRECISIONS["fp32"]), x, _Tracker(PRECISIONS["int8"], record=record), call)
    return [t.numpy() for t in record]


def match_ranges(values: list[np.ndarray], stored: list[tuple[np.ndarray, tuple[float, float]]],
                 input_range: tuple[float, float], tolerance: float = 0.05) -> Ranges:
    """Align an int8 file's stored tensors (dequantized value on the same input, NCHW, and range)
    with the graph's computed tensors: each graph tensor takes the range of the same-shaped
    stored tensor closest in value, channel by channel in any order (a converter may permute
    channels, e.g. before DEPTH_TO_SPACE), if the mean |difference| is below `tolerance` of the
    range (a few int8 steps of accumulated noise); a graph tensor with no such match is not
    stored in int8. A tensor whose ReLU the converter fused into its op is stored rectified, with
    a range from 0: it is matched through its ReLU, and clamping it to that range is the ReLU."""
    ops: list[tuple[float, float] | None] = []
    files = [(_by_channel(v), (lo, hi)) for v, (lo, hi) in stored if hi > lo]
    for value in values:
        graph = _by_channel(value)
        forms = (graph, np.maximum(graph, 0))
        candidates = [(flat, lo, hi, forms[:2 if lo >= 0 else 1]) for flat, (lo, hi) in files
                      if flat.shape == graph.shape]
        best, best_error = None, tolerance
        for flat, lo, hi, mine in candidates:  # channels in the same order: the usual case, and cheap
            for form in mine:
                error = float(np.abs(form - flat).mean()) / (hi - lo)
                if error < best_error:
                    best, best_error = (lo, hi), error
        if best is None and graph.shape[0] > 1:  # channels permuted by the converter
            for flat, lo, hi, mine in candidates:
                for form in mine:
                    # the channel means' distance bounds the distance from below: most pairs end here
                    bound = _channel_distance(form.mean(axis=1, keepdims=True), flat.mean(axis=1, keepdims=True))
                    if bound / (hi - lo) >= best_error:
                        continue
                    error = _channel_distance(form, flat) / (hi - lo)
                    if error < best_error:
                        best, best_error = (lo, hi), error
        ops.append(best)
    return Ranges(input_range, ops)


MATCH_SAMPLES = 2048  # values per channel compared when matching (a fixed, evenly spaced subset)


def _by_channel(a: np.ndarray) -> np.ndarray:
    """(channels, values) of NCHW (anything else: one channel), at most MATCH_SAMPLES values each."""
    flat = a.reshape(1, -1) if a.ndim < 2 else np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
    return flat[:, ::max(1, flat.shape[1] // MATCH_SAMPLES)]


def _channel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over a's channels (rows) of the mean |difference| to the closest channel of b; since
    |mean(x - y)| <= mean|x - y|, the distance of the channel means bounds it from below."""
    if a.shape[0] == 1:
        return float(np.mean(np.abs(a - b)))
    return float(np.mean([np.abs(b - row).mean(axis=1).min() for row in a]))


def modelled(module: nn.Module, x: np.ndarray, precision: Precision | str = "fp32", ranges: Ranges | None = None,
             call: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
             prepared: nn.Module | None = None, stored: bool = False) -> Modelled:
    """The error model of `module` on input x (NCHW): exact value at the storage precision,
    sigma of a correct implementation, the allowance for near-tie decisions and the exempt
    elements. `call(module, x)` replaces module(x) (e.g. ClassSR's hard routing); `prepared` is
    at_precision(module) when reused; `stored`: the weights were derived in float64 and rounded
    to fp32 (a deploy graph's fold)."""
    precision = PRECISIONS[precision] if isinstance(precision, str) else precision
    if precision.activations == "int8" and ranges is None:
        raise ValueError("int8 needs the file's ranges: see match_ranges()")
    model = prepared if prepared is not None else at_precision(module, precision)

    def run(**options) -> tuple[_Tracker, torch.Tensor]:
        tracker = _Tracker(precision, ranges, stored=stored, **options)
        out = _run(model, x, tracker, call)
        if tracker.ranges is not None and tracker.calls != len(tracker.ranges.ops):
            raise UnsupportedOp(f"error model: {tracker.calls} computed tensors on this input, "
                                f"{len(tracker.ranges.ops)} when the ranges were matched: the graph's ops depend on "
                                "the input")
        return tracker, out

    tracker, out = run()
    value = out.numpy().astype(np.float64)
    allowance: np.ndarray | float = 0.0
    if len(tracker.decisions) > MAX_FLIPS:
        tracker, out = run(exempt_near=True)
    else:
        for decision in tracker.decisions:
            allowance = allowance + np.abs(run(flip=decision)[1].numpy().astype(np.float64) - value)
    exempt = tracker.exempt(out)
    return Modelled(value, _sqrt0(torch.as_tensor(tracker.var(out))).numpy(),
                    exempt.numpy() if exempt is not None else np.zeros(out.shape, dtype=bool), tracker.unstable,
                    allowance)
