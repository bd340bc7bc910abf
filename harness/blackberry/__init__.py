"""BlackBerry wire formats and cipher constructions, shared by the simulator and the adversary.

Nothing here chooses a key, reads a clock or knows the truth: `formats` declares every byte layout
once (field tables), `ciphers` applies the primitives from `cryptography` the way the systems did.
Both the simulator (harness/sim) and the analyzers (harness/analyzers) import these modules.
"""
