"""The developer portal's people, without NATS: passwords, one-time tokens,
invitations and sessions, the login limiter's arithmetic, OIDC sign-in and
the invitation mail. The ingress keeps the records (``ingress/portal/``);
everything here is unit-tested directly."""
