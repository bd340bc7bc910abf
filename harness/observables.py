"""The observables a verdict is given for, and the verdict scale."""

OBSERVABLES: tuple[str, ...] = (
    "content",    # message bodies (canary recovered)
    "subject",    # e-mail subject lines
    "sender",     # the sending user's application identity (address, user name)
    "recipient",  # the receiving user's application identity
    "contacts",   # who talks to whom: (sender user, recipient user) pairs
    "timing",     # when each message was sent
    "size",       # how large each message was
    "volume",     # how many messages each user sent
    "service",    # which application/service each flow carries
    "endpoint",   # the final destination server of the traffic
    "device",     # which device (address, PIN) took part in each message
)

VERDICTS: tuple[str, ...] = ("hidden", "partial", "visible")
NOT_APPLICABLE = "n/a"
