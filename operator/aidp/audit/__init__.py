"""Cluster audit: who talks to AI, under which terms, and the evidence (contract section 5 (docs/policy-contract.md))."""
