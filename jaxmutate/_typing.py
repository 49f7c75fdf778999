"""Type aliases used across jaxmutate."""

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
