"""The public spelling of the encoding specs, ``from interp_embed.encode.config import EncodePlan, ReaderSpec``
(README, Encoding). They live in :mod:`interp_embed.spec`, below every room that uses them; nothing inside the
package imports this module."""
from ..spec.plan import BYTES_PER_TOKEN, ChunkCutter, EncodePlan, estimated_tokens
from ..spec.reader import BUNDLED_READER, ROLES, ReaderSpec, Role, check_role

__all__ = ["BUNDLED_READER", "BYTES_PER_TOKEN", "ROLES", "ChunkCutter", "EncodePlan", "ReaderSpec", "Role",
           "check_role", "estimated_tokens"]
