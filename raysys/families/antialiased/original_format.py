"""An ``<arch>_lpf<N>`` (or a torchvision baseline) in the module layout of adobe/antialiased-cnns.

raysys builds an antialiased model by surgery on torchvision's (models.py), so its keys are
torchvision's and its BlurPool filters are not saved. The original writes the BlurPools as
modules of their own, with persistent filters (``<path>.filt``, channels x 1 x N x N), so:

- a conv whose input is blurred (:class:`BlurConv2d`) is two modules, BlurPool then conv: in a
  ``Sequential`` they are siblings and the later ones move up one index (``downsample.0.filt``,
  ``downsample.1.weight``, ``downsample.2.*``), elsewhere a ``Sequential`` of the two
  (``layer2.0.conv2.0.filt``, ``layer2.0.conv2.1.weight``);
- a module followed by a BlurPool (``Sequential(pool, BlurPool)``) is flattened into a
  ``Sequential`` parent (VGG's and AlexNet's ``features.<i>``), kept as a pair under another
  module (ResNet's ``maxpool.1.filt``), and in a named ``Sequential`` the BlurPool takes the
  name (DenseNet's ``features.pool0.filt``; its max pool, named ``max0``, holds no tensors);
- a ``Sequential`` inside a ``Sequential`` that ends in such a pair hands the BlurPool to its
  parent, after itself (MobileNetV2's ``features.<b>.conv.2.filt`` after the depthwise
  ConvBNReLU ``conv.1``);
- an ``nn.Identity`` in a ``Sequential`` is not there (MobileNetV2's classifier: the original
  comments its dropout out, raysys keeps torchvision's ``classifier.1`` behind an Identity;
  the original's linear layer is ``classifier.0``).

The tensors come in the original's order, which is how raysys reads such a file back
(:func:`raysys.models.weights.load_state` matches by order and shape).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from raysys.errors import CheckpointError
from raysys.families.antialiased.blurpool import BlurConv2d, BlurPool
from raysys.models.weights import register_original_format

# A module of the original's layout: its own tensors and its named children.
Node = Tuple[List[Tuple[str, torch.Tensor]], List[Tuple[str, "Node"]]]


@register_original_format("antialiased")
def export_original(model: nn.Module, name: str) -> Dict[str, Any]:
    """``{"state_dict": ..., "arch": name}``: what the original's ``main.py --weights`` reads
    (``model.load_state_dict(weights['state_dict'])``, strict, into ``antialiased_cnns.<arch>(filter_size=N)``
    or torchvision's ``<arch>``); ``arch`` as its checkpoints name it, so raysys checks the file's model."""
    return {"state_dict": original_state_dict(model), "arch": name}


def original_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """``model``'s tensors under the original's keys, BlurPool filters included, in the original's order."""
    out: Dict[str, torch.Tensor] = {}
    _emit(_node(model), "", out)
    return out


def _emit(node: Node, prefix: str, out: Dict[str, torch.Tensor]) -> None:
    own, children = node
    for key, tensor in own:
        out[prefix + key] = tensor
    for key, child in children:
        _emit(child, f"{prefix}{key}.", out)


def _own(module: nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """What the original saves of ``module`` itself: parameters, persistent buffers, a BlurPool's filter."""
    kept = set(module._buffers) if isinstance(module, BlurPool) else set(module._buffers) - module._non_persistent_buffers_set
    return [(k, p.detach()) for k, p in module._parameters.items() if p is not None] + \
        [(k, b) for k, b in module._buffers.items() if b is not None and k in kept]


def _is_pair(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[1], BlurPool)


def _is_indexed(module: nn.Module) -> bool:
    names = [n for n, _ in module.named_children()]
    return isinstance(module, nn.Sequential) and bool(names) and all(n.isdigit() for n in names)


def _expand(module: nn.Module) -> List[Node]:
    """The original's modules that ``module`` stands for, in order."""
    if isinstance(module, BlurConv2d):
        return [(_own(module.blur), []), (_own(module), [])]
    if _is_pair(module):
        return _expand(module[0]) + [(_own(module[1]), [])]
    return [_node(module)]


def _in_sequence(module: nn.Module) -> List[Node]:
    """``module``'s modules in an indexed ``Sequential`` parent: a trailing pair's BlurPool comes out after it."""
    if isinstance(module, nn.Identity):
        return []
    nodes = _expand(module)
    if not _is_pair(module) and _is_indexed(module) and _is_pair(module[-1]):
        own, children = nodes[0]
        return [(own, children[:-1]), children[-1][1]]
    return nodes


def _node(module: nn.Module) -> Node:
    if _is_indexed(module):
        flat = [node for _, child in module.named_children() for node in _in_sequence(child)]
        return _own(module), [(str(i), node) for i, node in enumerate(flat)]
    children: List[Tuple[str, Node]] = []
    for key, child in module.named_children():
        nodes = _expand(child)
        if len(nodes) == 1:
            children.append((key, nodes[0]))
        elif isinstance(module, nn.Sequential):  # named: the BlurPool takes the name
            if any(own or grand for own, grand in nodes[:-1]):
                raise CheckpointError(f"{type(module).__name__}.{key}: no original layout for a blurred module with tensors")
            children.append((key, nodes[-1]))
        else:
            children.append((key, ([], [(str(i), node) for i, node in enumerate(nodes)])))
    return _own(module), children
