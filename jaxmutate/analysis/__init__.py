"""Channel analysis of unmodified models: which slices of which variables move together.

:func:`analyze_channels` traces ``model.apply`` once, walks the jaxpr with a
rule per primitive and returns the prunable units (:class:`ChannelGroup`),
the channels it cannot prune with the reason (:class:`ExcludedGroup`), and
ways to apply widths: masks under ``jit``/``vmap`` (:func:`mask_variables`),
slicing (:func:`slice_variables`), jittable MAC/parameter counts
(:meth:`ChannelAnalysis.costs`) and a smaller runnable network
(:func:`export_pruned`).

The masked (:func:`masked_function`) and the exported network both compute
what the model re-built at the pruned widths computes on
:func:`slice_variables`' output: literals traced from a channel count follow
the kept channels. Recognised, within one (nested) jaxpr: a mean over axes
that include channels (``reduce_sum`` then ``div`` by their size, or ``mul``
by its inverse; ``jnp.var``'s ``n - ddof``; LayerNorm, RMSNorm, GroupNorm, a
mean-pool over channels; a size that is a product with fixed axes scales
accordingly), queries divided by ``sqrt`` of their last (head) axis's size
(Flax's ``dot_product_attention``), and a batched ``dot_general`` (attention
logits) multiplied by its contracted size ``** -0.5`` or divided by its square
root. Any other constant stays as traced.
"""

from jaxmutate.analysis._analysis import ChannelAnalysis as ChannelAnalysis
from jaxmutate.analysis._analysis import ExcludedGroup as ExcludedGroup
from jaxmutate.analysis._analysis import analyze_channels as analyze_channels
from jaxmutate.analysis._analysis import leaf_key as leaf_key
from jaxmutate.analysis._apply import channel_masks as channel_masks
from jaxmutate.analysis._apply import mask_variables as mask_variables
from jaxmutate.analysis._apply import removed_positions as removed_positions
from jaxmutate.analysis._apply import slice_variables as slice_variables
from jaxmutate.analysis._export import PrunedNetwork as PrunedNetwork
from jaxmutate.analysis._export import export_pruned as export_pruned
from jaxmutate.analysis._export import load_pruned as load_pruned
from jaxmutate.analysis._export import masked_function as masked_function
from jaxmutate.analysis._export import pruned_function as pruned_function
from jaxmutate.analysis._groups import ChannelGroup as ChannelGroup
from jaxmutate.analysis._groups import ParamSlice as ParamSlice

__all__ = [
  "ChannelAnalysis",
  "ChannelGroup",
  "ExcludedGroup",
  "ParamSlice",
  "PrunedNetwork",
  "analyze_channels",
  "channel_masks",
  "export_pruned",
  "removed_positions",
  "leaf_key",
  "load_pruned",
  "mask_variables",
  "masked_function",
  "pruned_function",
  "slice_variables",
]
