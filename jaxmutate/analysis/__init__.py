"""Channel analysis of unmodified models: which slices of which variables move together."""

from jaxmutate.analysis._groups import ChannelGroup as ChannelGroup
from jaxmutate.analysis._groups import ParamSlice as ParamSlice

__all__ = ["ChannelGroup", "ParamSlice"]
