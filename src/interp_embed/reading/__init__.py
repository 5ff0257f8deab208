"""The reader at work: a language model loaded and run only up to the hook point an SAE reads (:mod:`.reader`,
:mod:`.hooking`), in the arithmetic chosen for this machine (:mod:`.arithmetic`), and the activations of documents
read in order (:mod:`.activations`). Needs torch; what it reads is described by :mod:`interp_embed.spec`.
"""
