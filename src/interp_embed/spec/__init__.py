"""What the rest of the package agrees on, as plain data: how work is cut (:mod:`.plan`), which reader reads where
(:mod:`.reader`, :mod:`.hook_point`), in which arithmetic (:mod:`.arithmetic`).

Pure specifications, no torch, importing nothing of the package but :mod:`interp_embed.validation`: the store,
the SAE sources and architectures, training and encoding all build on them, and a store's manifest records them
as JSON.
"""
