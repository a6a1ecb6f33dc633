"""Egress rules: only approved workloads reach their AI endpoints (docs/policy-contract.md, section 4).

`render` (pure) turns the policies of one namespace into backend objects; `resolver` keeps the
provider addresses the IP-based backends need; the operator applies the objects with server-side
apply and repairs drift.
"""
