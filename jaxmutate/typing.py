"""Type aliases used across jaxmutate, for annotating code that uses it.

Example:
  >>> import jax.numpy as jnp
  >>> from jaxmutate.typing import Choices, GroupChoices
  >>> def first_group(group_choices: GroupChoices) -> Choices:
  ...   return {"layer0": group_choices[0]}
  >>> first_group({0: jnp.int32(2)})
  {'layer0': Array(2, dtype=int32)}
"""

from typing import Any

import jax

PRNGKey = jax.Array
Choices = dict[str, jax.Array]
"""Mutable name → that mutable's choice (a subnet)."""
GroupChoices = dict[int, jax.Array]
"""Search-group id → choice."""
Variables = dict[str, Any]
"""A Flax variable tree (``{"params": ..., "batch_stats": ..., ...}``)."""
FixSubnet = dict[str, dict[str, Any]]
"""MMRazor's subnet layout: ``{alias or mutable name: {"chosen": value}}``."""
