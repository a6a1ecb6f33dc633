"""Cluster audit: who talks to AI, under which terms, and the evidence (docs/policy-contract.md,
section 5)."""
